//! A real VictoriaMetrics (Debian's `victoria-metrics`) on loopback with
//! its own storage: as a remote-write receiver and as a scraper.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::prometheus::encode;
use super::{http, tool, wait_for};

pub struct Victoria {
    child: Child,
    pub port: u16,
    pub data: PathBuf,
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Victoria {
    /// Stores in `data` (the same dir and port restart it on the same
    /// storage); scrapes with `scrape` (a Prometheus `scrape_configs:`
    /// file) when given. Queries see samples at once (no latency offset).
    pub fn start(data: &Path, port: u16, scrape: Option<&Path>) -> Victoria {
        let mut cmd = Command::new(tool("victoria-metrics"));
        cmd.arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache");
        if let Some(s) = scrape {
            cmd.arg(format!("-promscrape.config={}", s.display()));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics");
        let v = Victoria {
            child,
            port,
            data: data.to_path_buf(),
        };
        wait_for(
            "VictoriaMetrics to be ready",
            Duration::from_secs(60),
            || {
                let url = format!("http://127.0.0.1:{port}/health");
                let r = std::panic::catch_unwind(|| http(&url, &[])).ok()?;
                (r.status == 200).then_some(())
            },
        );
        v
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops it as systemd would (SIGTERM: it flushes what it holds),
    /// killing it after 30 s.
    pub fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
    }

    /// An instant query's first value (Prometheus's API, MetricsQL).
    pub fn query(&self, q: &str) -> Option<f64> {
        let url = format!("{}?query={}", self.url("/api/v1/query"), encode(q));
        let r = std::panic::catch_unwind(|| http(&url, &[])).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let x = &v["data"]["result"].as_array()?.first()?["value"][1];
        x.as_str()?.parse().ok()
    }

    /// The raw samples' timestamps (ms) of the series `selector` names,
    /// as stored (`/api/v1/export`), from `start` to `end` (unix seconds).
    pub fn timestamps(&self, selector: &str, start: f64, end: f64) -> Vec<i64> {
        let url = format!(
            "{}?match[]={}&start={start:.3}&end={end:.3}",
            self.url("/api/v1/export"),
            encode(selector)
        );
        let r = http(&url, &[]);
        let mut ts: Vec<i64> = String::from_utf8_lossy(&r.body)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|v| {
                v["timestamps"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|t| t.as_i64())
            })
            .collect();
        ts.sort_unstable();
        ts
    }
}
