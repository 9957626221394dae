//! CPU: time by state per core.

mod usage;
