//! A real Prometheus (Debian's package) scrapes the agent.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target_port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query's single result, if any.
    fn query(&self, q: &str) -> Option<f64> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            q.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
        );
        let r = std::panic::catch_unwind(|| http(&url, &[])).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

#[test]
fn prometheus_scrapes_the_agent() {
    let agent = Agent::start();
    let prom = Prometheus::start(agent.port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let up = loop {
        if let Some(v) = prom.query("up{job=\"sonde\"}") {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never reported the target"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(up, 1.0, "target up");
    let mem = loop {
        if let Some(v) = prom.query("memory_total_bytes") {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "memory_total_bytes never became queryable"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(mem, mem_total_bytes());
    // A labelled counter comes through with its labels.
    assert!(
        prom.query("cpu_usage_seconds_total{cpu=\"0\",state=\"idle\"}")
            .unwrap_or(0.0)
            > 0.0
    );
}
