//! Softirqs.

mod kinds;
