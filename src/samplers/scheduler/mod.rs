//! Scheduler.

mod runqueue;
