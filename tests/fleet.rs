//! Many agents: the exporter relays 100 sources on loopback, each a
//! stand-in agent serving a real agent's current `/metrics/binary` (a
//! real HTTP server forwarding it), of which 3 answer only after 3 s and 2
//! are dead. Every healthy source must be relayed, pulled every interval,
//! and up; the slow and dead ones down; and `/metrics` must answer at
//! once: a slow or dead source never delays the others.

mod common;

use std::time::{Duration, Instant};

use common::*;

const HEALTHY: usize = 95;
const SLOW: usize = 3;
const DEAD: usize = 2;

fn of(text: &str, metric: &str, source: &str) -> Option<f64> {
    let label = format!("source=\"{source}\"");
    sample(text, metric, &[label.as_str()])
}

fn up(text: &str, source: &str) -> Option<f64> {
    of(text, "sonde_exporter_source_up", source)
}

fn pulls(text: &str, source: &str) -> f64 {
    of(text, "sonde_exporter_pulls_total", source).unwrap_or(0.0)
}

#[test]
fn a_hundred_sources_and_the_slow_and_dead_ones_delay_no_one() {
    if !bpf_or_skip() {
        return;
    }
    // One refresh a second, shared by the hundred pulls.
    let agent = agent_with_config(&["memory", "scheduler"], |c| c.set("general.ttl", "1s"));
    let binary = agent.url("/metrics/binary");
    let forward = move |_: &Received, _: usize| {
        let r = http(&binary, &[]);
        (r.status, vec![], r.body)
    };
    let healthy: Vec<TestServer> = (0..HEALTHY)
        .map(|_| TestServer::start(forward.clone()))
        .collect();
    let slow: Vec<TestServer> = (0..SLOW)
        .map(|_| {
            let f = forward.clone();
            TestServer::start(move |r: &Received, n: usize| {
                std::thread::sleep(Duration::from_secs(3));
                f(r, n)
            })
        })
        .collect();
    let dead: Vec<u16> = (0..DEAD).map(|_| free_port()).collect();
    let mut urls: Vec<String> = healthy.iter().chain(&slow).map(|s| s.url("")).collect();
    urls.extend(dead.iter().map(|p| format!("http://127.0.0.1:{p}")));
    let mut config = String::from(
        "[listen]\naddress = \"127.0.0.1:0\"\n[general]\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
    );
    for u in &urls {
        config += &format!("[[sources]]\nurl = \"{u}\"\n");
    }
    let exporter = Agent::exporter(&config);
    let name = |u: &String| u.trim_start_matches("http://").to_string();
    let text = wait_for(
        "every healthy source relayed",
        Duration::from_secs(30),
        || {
            let text = exporter.get("/metrics").text();
            let relayed = urls[..HEALTHY]
                .iter()
                .filter(|u| of(&text, "memory_total_bytes", &name(u)) == Some(mem_total_bytes()))
                .count();
            (relayed == HEALTHY).then_some(text)
        },
    );
    let before: Vec<f64> = urls.iter().map(|u| pulls(&text, &name(u))).collect();
    // Ten intervals: every healthy source is pulled at each, whatever the
    // slow ones do; /metrics answers at once every time.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let r = exporter.get("/metrics");
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = exporter.get("/metrics").text();
    for (u, b) in urls[..HEALTHY].iter().zip(&before) {
        let n = pulls(&text, &name(u)) - b;
        assert!(n >= 8.0, "{u}: {n} pulls in 10 intervals");
    }
    for u in &urls[HEALTHY..] {
        assert_eq!(up(&text, &name(u)), Some(0.0), "{u} is slow or dead");
    }
    // Every healthy source up together (one pull late on a busy machine
    // is not the slow ones' doing: read until all are).
    wait_for("every healthy source up", Duration::from_secs(10), || {
        let text = exporter.get("/metrics").text();
        urls[..HEALTHY]
            .iter()
            .all(|u| up(&text, &name(u)) == Some(1.0))
            .then_some(())
    });
    // Far below the slow sources' 3 s: nothing waits for them.
    assert!(
        slowest < Duration::from_millis(1500),
        "a scrape of the exporter took {slowest:?}"
    );
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    eprintln!(
        "{} sources ({HEALTHY} healthy, {SLOW} slow, {DEAD} dead): {series} series, slowest scrape {slowest:?}",
        urls.len()
    );
}
