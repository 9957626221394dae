//! Memory: usage, page faults, swapping, OOM kills.

mod meminfo;
