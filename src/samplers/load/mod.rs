//! Load: load averages, runnable/blocked tasks, pressure stall information.

mod loadavg;
mod pressure;
