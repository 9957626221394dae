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

/// The best candidate of each metric family and how many others it had:
/// every analysis answers one entry per family.
pub(crate) struct Families<T>(std::collections::BTreeMap<String, (T, usize)>);

impl<T> Families<T> {
    pub(crate) fn new() -> Self {
        Families(Default::default())
    }

    /// Offers `c` for `family`; `better(c, kept)` says whether it wins.
    pub(crate) fn offer(&mut self, family: &str, c: T, better: impl Fn(&T, &T) -> bool) {
        match self.0.get_mut(family) {
            Some((kept, others)) => {
                *others += 1;
                if better(&c, kept) {
                    *kept = c;
                }
            }
            None => {
                self.0.insert(family.to_string(), (c, 0));
            }
        }
    }

    /// The winners, each told how many others its family had.
    pub(crate) fn into_best(self, set_others: impl Fn(&mut T, usize)) -> Vec<T> {
        self.0
            .into_values()
            .map(|(mut c, n)| {
                set_others(&mut c, n);
                c
            })
            .collect()
    }
}
