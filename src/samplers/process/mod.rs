//! The agent's own process: what it costs the host.

mod own;
