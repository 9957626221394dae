//! A real Prometheus (Debian's package) scrapes the agent.

mod common;

use std::time::Duration;

use common::prometheus::Prometheus;
use common::*;

#[test]
fn prometheus_scrapes_the_agent() {
    let agent = Agent::start();
    let prom = Prometheus::scraping(agent.port);
    let t = Duration::from_secs(60);
    let up = wait_for("Prometheus to report the target", t, || {
        prom.query("up{job=\"sonde\"}")
    });
    assert_eq!(up, 1.0, "target up");
    let mem = wait_for("memory_total_bytes", t, || prom.query("memory_total_bytes"));
    assert_eq!(mem, mem_total_bytes());
    // A labelled counter comes through with its labels.
    assert!(
        prom.query("cpu_usage_seconds_total{cpu=\"0\",state=\"idle\"}")
            .unwrap_or(0.0)
            > 0.0
    );
}
