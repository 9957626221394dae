//! Block I/O.

mod diskstats;
