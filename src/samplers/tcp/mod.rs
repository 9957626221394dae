//! TCP.

mod connections;
