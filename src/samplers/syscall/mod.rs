//! Syscalls.

mod latency;
