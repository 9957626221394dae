//! A live agent as the viewer's source: its `/metrics/binary` polled at
//! an interval into memory (the newest `keep` of it), with the bodies
//! kept as they came so the page can save what it shows as a recording.

use std::collections::VecDeque;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::parquet::{file_metadata, write, Snapshots};
use crate::query::Memory;
use crate::snapshot::{decode, fetch, Snapshot};

pub struct Live {
    pub url: String,
    pub interval: Duration,
    pub memory: RwLock<Memory>,
    bodies: Mutex<VecDeque<Vec<u8>>>,
    keep_rows: usize,
    pub status: Mutex<Status>,
}

/// How polling goes, for the page's banner.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Status {
    pub polls: u64,
    /// Unix seconds of the last snapshot read.
    pub last_ok: Option<f64>,
    /// The last failure, while failing.
    pub error: Option<String>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Live {
    /// Reads the first snapshot now: a dead agent is an error at start,
    /// naming the URL and why.
    pub async fn connect(url: &str, interval: Duration, keep: Duration) -> anyhow::Result<Live> {
        let keep_rows = (keep.as_nanos() / interval.as_nanos().max(1)) as usize + 1;
        let live = Live {
            url: url.trim_end_matches('/').to_string(),
            interval,
            memory: RwLock::new(Memory::new(keep_rows, Some(interval))),
            bodies: Mutex::new(VecDeque::new()),
            keep_rows,
            status: Mutex::new(Status::default()),
        };
        live.poll_once()
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the agent at {url}: {e}"))?;
        Ok(live)
    }

    async fn poll_once(&self) -> Result<(), String> {
        let client = crate::client::shared();
        let binary = fetch::binary_url(&self.url);
        let r = fetch::snapshot(
            &client,
            &binary,
            &Default::default(),
            Duration::from_secs(10),
        )
        .await;
        let r = match r {
            // Off the async workers: the write lock waits for section
            // answers being computed under the read lock.
            Ok((snap, body)) => {
                let push = || self.push(&snap, body);
                tokio::task::block_in_place(push);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        // The status lock is never held with the memory lock.
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.polls += 1;
        match &r {
            Ok(()) => {
                status.last_ok = Some(unix_now());
                status.error = None;
            }
            Err(e) => {
                if status.error.is_none() {
                    tracing::warn!("cannot pull {binary}: {e}");
                }
                status.error = Some(e.clone());
            }
        }
        r
    }

    fn push(&self, snap: &Snapshot, body: Vec<u8>) {
        let kept = self
            .memory
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(snap);
        // Only what memory kept, so a save holds what the page showed.
        if kept {
            let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
            bodies.push_back(body);
            while bodies.len() > self.keep_rows {
                bodies.pop_front();
            }
        }
    }

    /// Polls until the process ends.
    pub async fn run(self: std::sync::Arc<Self>) {
        let mut ticker = crate::runtime::Ticker::new(self.interval);
        loop {
            ticker.tick().await;
            let _ = self.poll_once().await;
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What was polled so far as a recording (parquet bytes), in the
    /// layout `sonde record` writes.
    pub fn save(&self) -> anyhow::Result<Vec<u8>> {
        let bodies: Vec<Vec<u8>> = self
            .bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        // A private directory (mkdtemp): the writer renames into place.
        let dir = tempfile::Builder::new().prefix("sonde-view-").tempdir()?;
        let path = dir.path().join("live.parquet");
        let mut meta = file_metadata(self.interval, None, None);
        meta.push(("source_url".into(), self.url.clone()));
        write(&path, &meta, &mut Bodies(&bodies))?;
        Ok(std::fs::read(&path)?)
    }
}

struct Bodies<'a>(&'a [Vec<u8>]);

impl Snapshots for Bodies<'_> {
    fn each(&mut self, f: &mut dyn FnMut(Snapshot)) -> anyhow::Result<()> {
        for b in self.0 {
            // Each body decoded when it came; a failure here is a bug.
            f(decode(b)?);
        }
        Ok(())
    }
}
