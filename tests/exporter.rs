//! `sonde exporter`: real agents in, a real Prometheus out, and sources
//! that misbehave on purpose (a real HTTP server in the test).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::*;

fn exporter_config(sources: &[String], extra: &str) -> String {
    let mut c = String::from(
        "[listen]\naddress = \"127.0.0.1:0\"\n[general]\ninterval = \"1s\"\ntimeout = \"500ms\"\n",
    );
    for s in sources {
        c += &format!("[[sources]]\nurl = \"{s}\"\n");
    }
    c + extra
}

fn body(e: &Agent) -> String {
    let r = e.get("/metrics");
    assert_eq!(r.status, 200, "the exporter always answers 200");
    r.text()
}

fn source_up(text: &str, source: &str) -> Option<f64> {
    sample(
        text,
        "sonde_exporter_source_up",
        &[&format!("source=\"{source}\"")],
    )
}

#[test]
fn two_agents_through_the_exporter_into_prometheus() {
    // Syscall latency (sampled) too: a labelled histogram end to end.
    let sampled = |c: Config| c.set("samplers.syscall.latency", "sampled");
    let a = Agent::start_with(sampled);
    let b = Agent::start_with(sampled);
    let (sa, sb) = (
        format!("127.0.0.1:{}", a.port),
        format!("127.0.0.1:{}", b.port),
    );
    let exporter = Agent::exporter(&exporter_config(
        &[a.url(""), b.url("")],
        "[prometheus]\npercentiles = [0.5, 0.99]\nhistograms = true\n",
    ));
    // The first answer already carries the first pull: never an empty 200.
    let first = body(&exporter);
    assert_eq!(source_up(&first, &sa), Some(1.0), "{first}");
    assert!(first.contains("memory_total_bytes{"));
    let t = Duration::from_secs(30);
    // Percentiles need two snapshots; wait for the second interval.
    let text = wait_for("percentiles from both sources", t, || {
        let text = body(&exporter);
        let both = [&sa, &sb].iter().all(|s| {
            sample(
                &text,
                "scheduler_runqueue_latency_seconds_count",
                &[&format!("source=\"{s}\"")],
            )
            .is_some()
        });
        both.then_some(text)
    });
    let (ok, msg) = promtool_check(&text);
    assert!(ok, "promtool: {msg}");
    assert_eq!(source_up(&text, &sa), Some(1.0));
    assert_eq!(source_up(&text, &sb), Some(1.0));
    assert!(text.contains("# TYPE scheduler_runqueue_latency_seconds summary\n"));
    assert!(text.contains("# TYPE scheduler_runqueue_latency_buckets_seconds histogram\n"));
    assert_eq!(text.matches("# TYPE memory_total_bytes gauge").count(), 1);
    for s in [&sa, &sb] {
        let mem = sample(&text, "memory_total_bytes", &[&format!("source=\"{s}\"")]);
        assert_eq!(mem, Some(mem_total_bytes()), "source {s}");
    }

    let prom = Prometheus::scraping(exporter.port);
    let t = Duration::from_secs(60);
    let up = wait_for("the exporter target", t, || prom.query("up{job=\"sonde\"}"));
    assert_eq!(up, 1.0);
    let mem = wait_for("memory_total_bytes of agent a", t, || {
        prom.query(&format!("memory_total_bytes{{source=\"{sa}\"}}"))
    });
    assert_eq!(mem, mem_total_bytes());
    let sources = wait_for("both sources in Prometheus", t, || {
        prom.query("count(memory_total_bytes)")
            .filter(|n| *n == 2.0)
    });
    assert_eq!(sources, 2.0);
    // Something always waits for a CPU: a real p99 above zero.
    let p99 = wait_for("a run-queue p99", t, || {
        prom.query("max(scheduler_runqueue_latency_seconds{quantile=\"0.99\"} > 0)")
    });
    assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99}");
    let syscall = wait_for("a syscall latency p99", t, || {
        prom.query("max(syscall_latency_seconds{quantile=\"0.99\"} > 0)")
    });
    assert!(syscall > 0.0, "syscall p99 {syscall}");
}

#[test]
fn a_killed_agent_goes_down_and_comes_back_without_a_bogus_interval() {
    let port = free_port();
    let listen = move |c: Config| c.set("listen.address", format!("127.0.0.1:{port}"));
    let agent = Agent::start_with(listen);
    let source = format!("127.0.0.1:{port}");
    let exporter = Agent::exporter(&exporter_config(&[agent.url("")], ""));
    wait_for("percentiles", Duration::from_secs(20), || {
        let text = body(&exporter);
        text.contains("scheduler_runqueue_latency_seconds{quantile=\"0.5\"}")
            .then_some(())
    });
    drop(agent);
    // Down within two intervals, still a 200, and no relayed series.
    let text = wait_for("source_up 0", Duration::from_millis(2500), || {
        let text = body(&exporter);
        (source_up(&text, &source) == Some(0.0)).then_some(text)
    });
    assert!(
        !text.contains("memory_total_bytes"),
        "stale series shown as fresh"
    );
    assert!(!text.contains("quantile="));
    assert!(
        sample(
            &text,
            "sonde_exporter_pull_errors_total",
            &["reason=\"connect\""]
        )
        .unwrap()
            >= 1.0
    );

    let _agent = Agent::start_with(listen);
    // The first answer after the restart carries the counters but no
    // percentiles: there is no interval to take them from yet.
    let text = wait_for("source_up 1", Duration::from_secs(5), || {
        let text = body(&exporter);
        (source_up(&text, &source) == Some(1.0)).then_some(text)
    });
    assert!(text.contains("memory_total_bytes "));
    assert!(
        !text.contains("quantile="),
        "a percentile from across the restart"
    );
    let text = wait_for("percentiles again", Duration::from_secs(5), || {
        let text = body(&exporter);
        text.contains("quantile=").then_some(text)
    });
    // One interval of a fresh agent: a few thousand switches, not the
    // agent's whole history.
    let n = sample(&text, "scheduler_runqueue_latency_seconds_count", &[]).unwrap();
    assert!(n < 1e6, "interval count {n}");
    let (ok, msg) = promtool_check(&text);
    assert!(ok, "promtool: {msg}");
}

/// A real HTTP server that answers each source path in its own bad way.
fn hostile_server(good: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let good = good.clone();
            std::thread::spawn(move || {
                let mut req = [0u8; 4096];
                let n = conn.read(&mut req).unwrap_or(0);
                let req = String::from_utf8_lossy(&req[..n]).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let head = |ct: &str, len: usize| {
                    format!("HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
                };
                let _ = match path.split('/').nth(1).unwrap_or("") {
                    "truncated" => {
                        let b = &good[..good.len() / 2];
                        conn.write_all(head("application/msgpack", b.len()).as_bytes())
                            .and_then(|_| conn.write_all(b))
                    }
                    "html" => {
                        let b = b"<html>hello</html>";
                        conn.write_all(head("text/html", b.len()).as_bytes())
                            .and_then(|_| conn.write_all(b))
                    }
                    "deep" => {
                        let mut b = vec![0x96, 0x92, 0x01, 0x00, 0x92, 0x00, 0x00];
                        b.extend(std::iter::repeat_n(0x91, 1 << 20));
                        conn.write_all(head("application/msgpack", b.len()).as_bytes())
                            .and_then(|_| conn.write_all(&b))
                    }
                    "huge" => {
                        // Claims 1 GB and streams it until the reader gives up.
                        let chunk = vec![0x90u8; 1 << 20];
                        conn.write_all(head("application/msgpack", 1 << 30).as_bytes())
                            .and_then(|_| (0..1024).try_for_each(|_| conn.write_all(&chunk)))
                    }
                    "endless" => {
                        // Chunked, no length: the cap must hold without one.
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\ntransfer-encoding: chunked\r\n\r\n");
                        let chunk = vec![0x90u8; 1 << 20];
                        (0..1024).try_for_each(|_| {
                            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                            conn.write_all(&chunk)?;
                            conn.write_all(b"\r\n")
                        })
                    }
                    "slow" => {
                        std::thread::sleep(Duration::from_secs(3));
                        conn.write_all(head("application/msgpack", good.len()).as_bytes())
                            .and_then(|_| conn.write_all(&good))
                    }
                    "missing" => conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    ),
                    _ => conn
                        .write_all(head("application/msgpack", good.len()).as_bytes())
                        .and_then(|_| conn.write_all(&good)),
                };
            });
        }
    });
    port
}

#[test]
fn misbehaving_sources_are_counted_and_isolated() {
    let agent = Agent::start();
    let snapshot = agent.get("/metrics/binary").body;
    let port = hostile_server(snapshot);
    let kinds = [
        ("truncated", "decode"),
        ("html", "content_type"),
        ("deep", "decode"),
        ("huge", "too_large"),
        ("endless", "too_large"),
        ("slow", "timeout"),
        ("missing", "status"),
    ];
    let mut sources: Vec<String> = kinds
        .iter()
        .map(|(k, _)| format!("http://127.0.0.1:{port}/{k}"))
        .collect();
    sources.push(agent.url(""));
    let exporter = Agent::exporter(&exporter_config(&sources, ""));
    let good = format!("127.0.0.1:{}", agent.port);
    let text = wait_for("every source pulled twice", Duration::from_secs(20), || {
        let text = body(&exporter);
        let all = kinds.iter().all(|(k, reason)| {
            let s = format!("source=\"127.0.0.1:{port}/{k}\"");
            sample(
                &text,
                "sonde_exporter_pull_errors_total",
                &[&s, &format!("reason=\"{reason}\"")],
            )
            .is_some_and(|n| n >= 2.0)
        });
        all.then_some(text)
    });
    for (k, _) in &kinds {
        assert_eq!(
            source_up(&text, &format!("127.0.0.1:{port}/{k}")),
            Some(0.0),
            "{k}"
        );
    }
    assert_eq!(source_up(&text, &good), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "memory_total_bytes",
            &[&format!("source=\"{good}\"")]
        ),
        Some(mem_total_bytes())
    );
    let (ok, msg) = promtool_check(&text);
    assert!(ok, "promtool: {msg}");
    // Two 1 GB bodies were offered and refused at the 32 MiB cap.
    let peak = peak_rss(exporter.child.id());
    assert!(peak < 200 << 20, "exporter peak RSS {} MiB", peak >> 20);
}
