//! A real Prometheus (Debian's package) on loopback with temporary storage:
//! as a scraper, and as a remote-write receiver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http, tool, wait_for};

pub struct Prometheus {
    child: Child,
    pub port: u16,
    pub data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `127.0.0.1:target_port` every second as job `sonde`.
    pub fn scraping(target_port: u16) -> Prometheus {
        let scrape = format!(
            "scrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        );
        Prometheus::start(&scrape, None, free_port(), &[])
    }

    /// [`Prometheus::scraping`] with native histograms on: Prometheus then
    /// asks for the protobuf exposition first.
    pub fn scraping_native(target_port: u16) -> Prometheus {
        let scrape = format!(
            "scrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        );
        Prometheus::start(
            &scrape,
            None,
            free_port(),
            &["--enable-feature=native-histograms"],
        )
    }

    /// Scrapes with `scrape` as the config's `scrape_configs:` part (every
    /// second, like [`Prometheus::scraping`]).
    pub fn scraping_with(scrape: &str) -> Prometheus {
        Prometheus::start(scrape, None, free_port(), &[])
    }

    /// Receives remote writes at `/api/v1/write`, storing in `data` (pass
    /// the same dir and port to restart it on the same storage).
    pub fn receiver(data: Option<&Path>, port: u16) -> Prometheus {
        Prometheus::start("", data, port, &["--web.enable-remote-write-receiver"])
    }

    /// [`Prometheus::receiver`] with native histograms on.
    pub fn receiver_native(port: u16) -> Prometheus {
        Prometheus::start(
            "",
            None,
            port,
            &[
                "--web.enable-remote-write-receiver",
                "--enable-feature=native-histograms",
            ],
        )
    }

    /// Serves the blocks in `data` (e.g. from `promtool tsdb
    /// create-blocks-from`), scraping nothing.
    pub fn on_data(data: &Path) -> Prometheus {
        Prometheus::start("", Some(data), free_port(), &[])
    }

    /// A range query's result (`matrix`), or Prometheus's error.
    pub fn query_range(
        &self,
        q: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<serde_json::Value, String> {
        let url = format!(
            "{}?query={}&start={start}&end={end}&step={step}",
            self.url("/api/v1/query_range"),
            encode(q)
        );
        let r = std::panic::catch_unwind(|| http(&url, &[]))
            .map_err(|_| "the query request failed".to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("HTTP {}: not JSON ({e})", r.status))?;
        if v["status"] != "success" {
            return Err(format!(
                "HTTP {}: {}: {}",
                r.status, v["errorType"], v["error"]
            ));
        }
        Ok(v["data"].clone())
    }

    fn start(scrape: &str, data: Option<&Path>, port: u16, args: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n{scrape}"),
        )
        .unwrap();
        let data = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            port,
            data,
            _dir: dir,
        };
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            let url = format!("http://127.0.0.1:{port}/-/ready");
            let r = std::panic::catch_unwind(|| http(&url, &[])).ok()?;
            (r.status == 200).then_some(())
        });
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops it (SIGKILL) and waits.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// An instant query's result vector, if the query succeeded.
    pub fn query_all(&self, q: &str) -> Option<Vec<serde_json::Value>> {
        let url = format!("{}?query={}", self.url("/api/v1/query"), encode(q));
        let r = std::panic::catch_unwind(|| http(&url, &[])).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        v["data"]["result"].as_array().cloned()
    }

    /// An instant query's result vector, or why there is none (Prometheus's
    /// error for a query it rejects, or the failed request).
    pub fn query_checked(&self, q: &str) -> Result<Vec<serde_json::Value>, String> {
        let url = format!("{}?query={}", self.url("/api/v1/query"), encode(q));
        let r = std::panic::catch_unwind(|| http(&url, &[]))
            .map_err(|_| "the query request failed".to_string())?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("HTTP {}: not JSON ({e})", r.status))?;
        if v["status"] != "success" {
            return Err(format!(
                "HTTP {}: {}: {}",
                r.status, v["errorType"], v["error"]
            ));
        }
        v["data"]["result"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("not a vector: {}", v["data"]))
    }

    /// The value of an instant query's first result, if any.
    pub fn query(&self, q: &str) -> Option<f64> {
        self.query_all(q)?.first()?["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

/// Percent-encoding for a PromQL query in a URL.
pub fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
