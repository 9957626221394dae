//! Finding what went wrong in a recording, for people and for assistants
//! (`sonde mcp`): every series as a signal on one grid ([`frame`]),
//! anomalies in them ([`anomaly`]), what changed between two windows and
//! what moves with a signal ([`changed`]), on statistics written out in
//! [`stats`]. docs/analysis.md says exactly which algorithms run.

pub mod anomaly;
pub mod changed;
pub mod frame;
pub mod stats;

pub use anomaly::{detect, Finding, Method};
pub use changed::{correlate, what_changed, Change, Correlation};
pub use frame::{frame, Derived, Signal};
