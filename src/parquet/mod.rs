//! Recordings on disk, one home: the parquet layout of `sonde record` and
//! of hindsight's dumps (Rezolus's layout, see [`write`]), reading them
//! back on demand as a query source ([`Recording`], ours and Rezolus's),
//! the snapshots a spool holds read back as rows, and the file metadata
//! every recording carries. Modes that write or read recordings use this;
//! none imports another.

mod read;
mod write;

use std::sync::Mutex;
use std::time::Duration;

use crate::snapshot;
use crate::spool::{Entry, Spool};

pub use read::Recording;
pub use write::{write, Snapshots, Summary};

/// Snapshots stored in a spool, read back one by one (a missing or damaged
/// record is skipped and counted).
pub struct SpoolSnapshots<'a> {
    pub spool: &'a Mutex<Spool>,
    pub entries: Vec<Entry>,
    pub skipped: u64,
}

impl Snapshots for SpoolSnapshots<'_> {
    fn each(&mut self, f: &mut dyn FnMut(snapshot::Snapshot)) -> anyhow::Result<()> {
        self.skipped = 0;
        for e in &self.entries {
            let payload = self.spool.lock().unwrap_or_else(|p| p.into_inner()).read(e);
            match payload.map(|p| snapshot::decode(&p)) {
                Ok(Ok(s)) => f(s),
                Ok(Err(_)) | Err(_) => self.skipped += 1,
            }
        }
        Ok(())
    }
}

/// File metadata every recording carries, besides the snapshots' own.
pub fn file_metadata(
    interval: Duration,
    descriptions: Option<String>,
    systeminfo: Option<String>,
) -> Vec<(String, String)> {
    let mut m = vec![
        (
            "sampling_interval_ms".to_string(),
            interval.as_millis().to_string(),
        ),
        (
            "recorder".to_string(),
            concat!("sonde ", env!("CARGO_PKG_VERSION")).to_string(),
        ),
    ];
    if let Some(d) = descriptions {
        m.push(("descriptions".into(), d));
    }
    if let Some(s) = systeminfo {
        m.push(("systeminfo".into(), s));
    }
    m
}
