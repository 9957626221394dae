//! Filesystems.

mod usage;
