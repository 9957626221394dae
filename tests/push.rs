//! `sonde push`: a real agent, a real Prometheus remote-write receiver, and
//! real HTTP servers that fail on purpose.

mod common;

use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use common::prometheus::Prometheus;
use common::*;

fn push_config(
    spool: &std::path::Path,
    agent: &Agent,
    interval: &str,
    max_bytes: &str,
    sinks: &str,
) -> String {
    format!(
        "[source]\nurl = \"{}\"\ninterval = \"{interval}\"\n[spool]\npath = \"{}\"\nmax_bytes = \"{max_bytes}\"\n[listen]\naddress = \"127.0.0.1:0\"\n{sinks}",
        agent.url(""),
        spool.display()
    )
}

fn start_pusher(dir: &std::path::Path, config: &str) -> Agent {
    let path = dir.join("push.toml");
    std::fs::write(&path, config).unwrap();
    Agent::spawn(
        &["push", path.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "push",
    )
}

fn remote_write(port: u16) -> String {
    format!("[[sinks]]\nkind = \"remote_write\"\nurl = \"http://127.0.0.1:{port}/api/v1/write\"\n")
}

/// Sleeps until `offset` past the next whole second (pulls happen on them).
fn after_next_second(offset: Duration) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let into = Duration::from_nanos(now.subsec_nanos() as u64);
    std::thread::sleep(Duration::from_secs(1) - into + offset);
}

/// Timestamps (ms) of `metric` samples in the last `secs` seconds.
fn timestamps(prom: &Prometheus, metric: &str, secs: u64) -> Vec<f64> {
    let r = prom
        .query_all(&format!("{metric}[{secs}s]"))
        .unwrap_or_default();
    r.first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| v[0].as_f64().unwrap() * 1000.0)
        .collect()
}

#[test]
fn pushes_through_an_outage_and_a_kill_without_a_gap() {
    // Syscall latency (sampled) too: a labelled histogram end to end.
    let agent = Agent::start_with(|c| c.set("samplers.syscall.latency", "sampled"));
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("prometheus");
    let port = free_port();
    let prom = Prometheus::receiver(Some(&data), port);
    let config = push_config(
        &work.path().join("spool"),
        &agent,
        "1s",
        "512MiB",
        &remote_write(port),
    );
    let pusher = start_pusher(work.path(), &config);

    let t = Duration::from_secs(30);
    let mem = wait_for("memory_total_bytes in Prometheus", t, || {
        prom.query("memory_total_bytes")
    });
    assert_eq!(mem, mem_total_bytes());
    let buckets = wait_for("a syscall latency histogram", t, || {
        prom.query("count(syscall_latency_seconds_bucket)")
            .filter(|n| *n > 0.0)
    });
    assert!(buckets >= 10.0, "{buckets} bucket series");
    let runq = wait_for("run-queue p99 upstream", t, || {
        prom.query("histogram_quantile(0.99, rate(scheduler_runqueue_latency_seconds_bucket[5s]))")
    });
    assert!(runq.is_finite(), "p99 {runq}");
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3));

    // Outage: Prometheus is gone for ~20 s; half-way the pusher is killed
    // with SIGKILL and started again on the same spool.
    prom.stop();
    std::thread::sleep(Duration::from_secs(8));
    after_next_second(Duration::from_millis(300));
    let mut pusher = pusher;
    let _ = pusher.child.kill();
    let _ = pusher.child.wait();
    let pusher = start_pusher(work.path(), &config);
    std::thread::sleep(Duration::from_secs(10));
    let metrics = pusher.get("/metrics").text();
    let backlog = sample(&metrics, "sonde_push_backlog", &[]).unwrap();
    assert!(backlog >= 5.0, "backlog {backlog} during the outage");
    assert!(sample(&metrics, "sonde_push_spool_bytes", &[]).unwrap() > 0.0);

    let prom = Prometheus::receiver(Some(&data), port);
    wait_for("the backlog to drain", Duration::from_secs(60), || {
        let m = pusher.get("/metrics").text();
        (sample(&m, "sonde_push_backlog", &[]) == Some(0.0)).then_some(())
    });
    let window = start.elapsed().as_secs() + 2;
    let ts = timestamps(&prom, "memory_total_bytes", window);
    assert!(
        ts.len() as u64 >= window - 3,
        "{} samples in {window} s",
        ts.len()
    );
    let gaps: Vec<f64> = ts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 1500.0)
        .collect();
    assert!(gaps.is_empty(), "gaps (ms) in the pushed series: {gaps:?}");
    let m = pusher.get("/metrics").text();
    assert!(sample(&m, "sonde_push_retries_total", &[]).unwrap() >= 1.0);
    let (ok, msg) = promtool_check(&m);
    assert!(ok, "promtool: {msg}");
}

#[test]
fn retries_5xx_drops_400_and_posts_gzip_msgpack_with_the_token() {
    let agent = Agent::start();
    let work = tempfile::tempdir().unwrap();
    let server = TestServer::start(|req, nth| match req.path.as_str() {
        "/flaky" if nth == 0 => (503, vec![("retry-after".into(), "1".into())], vec![]),
        "/flaky" if nth == 1 => (503, vec![], vec![]),
        "/bad" => (400, vec![], b"out of bounds".to_vec()),
        _ => (200, vec![], vec![]),
    });
    let token = work.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let sinks = format!(
        "{}[[sinks]]\nkind = \"remote_write\"\nurl = \"{}\"\n[[sinks]]\nkind = \"http\"\nurl = \"{}\"\nbearer_token_file = \"{}\"\n[[sinks]]\nkind = \"http\"\nurl = \"{}\"\nformat = \"json\"\n",
        format_args!("[[sinks]]\nkind = \"remote_write\"\nurl = \"{}\"\n", server.url("/flaky")),
        server.url("/bad"),
        server.url("/collector"),
        token.display(),
        server.url("/json"),
    );
    let config = push_config(&work.path().join("spool"), &agent, "1s", "512MiB", &sinks);
    let pusher = start_pusher(work.path(), &config);
    let m = wait_for("deliveries after the 503s", Duration::from_secs(20), || {
        let m = pusher.get("/metrics").text();
        let flaky = format!("sink=\"{}\"", server.url("/flaky"));
        (sample(&m, "sonde_push_samples_sent_total", &[&flaky]).unwrap_or(0.0) > 0.0
            && server.requests("/bad").len() >= 3)
            .then_some(m)
    });
    let flaky = server.requests("/flaky");
    assert!(flaky.len() >= 3);
    for r in &flaky {
        assert_eq!(r.header("content-encoding"), Some("snappy"));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
    }
    // The first snapshot was sent three times (503, 503, 200), in order.
    assert_eq!(flaky[0].body, flaky[2].body);
    let flaky_sink = format!("sink=\"{}\"", server.url("/flaky"));
    assert!(sample(&m, "sonde_push_retries_total", &[&flaky_sink]).unwrap() >= 2.0);
    // 400: dropped and counted, each snapshot asked once.
    let bad_sink = format!("sink=\"{}\"", server.url("/bad"));
    let m = pusher.get("/metrics").text();
    let rejected = sample(
        &m,
        "sonde_push_snapshots_dropped_total",
        &[&bad_sink, "reason=\"rejected\""],
    )
    .unwrap();
    let asked = server.requests("/bad").len() as f64;
    assert!(
        rejected >= 2.0 && (asked - rejected).abs() <= 1.0,
        "rejected {rejected}, requests {asked}"
    );
    assert_eq!(
        sample(&m, "sonde_push_retries_total", &[&bad_sink]),
        Some(0.0)
    );

    let posted = server.requests("/collector");
    assert!(!posted.is_empty());
    let r = &posted[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(r.header("content-type"), Some("application/msgpack"));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut raw)
        .unwrap();
    let snap: metriken_exposition::SnapshotV2 = rmp_serde::from_slice(&raw).unwrap();
    assert!(snap
        .gauges
        .iter()
        .any(|g| g.metadata.get("metric").map(String::as_str) == Some("memory_total_bytes")));

    let json = wait_for("a JSON post", Duration::from_secs(10), || {
        server.requests("/json").pop()
    });
    assert_eq!(json.header("authorization"), None);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&json.body[..])
        .read_to_end(&mut raw)
        .unwrap();
    let snap: metriken_exposition::SnapshotV2 = serde_json::from_slice(&raw).unwrap();
    assert!(!snap.histograms.is_empty());
    // The agent's own metadata, written by the agent's JSON writer.
    assert_eq!(snap.metadata["source"], "sonde");
    assert_eq!(snap.metadata["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn a_tiny_spool_drops_the_oldest_and_counts_them() {
    let agent = Agent::start();
    let work = tempfile::tempdir().unwrap();
    let server = TestServer::start(|_, _| (503, vec![], vec![]));
    let sinks = format!(
        "[[sinks]]\nkind = \"http\"\nurl = \"{}\"\n",
        server.url("/down")
    );
    let config = push_config(&work.path().join("spool"), &agent, "200ms", "64KiB", &sinks);
    let pusher = start_pusher(work.path(), &config);
    let sink = format!("sink=\"{}\"", server.url("/down"));
    let m = wait_for("spool_full drops", Duration::from_secs(20), || {
        let m = pusher.get("/metrics").text();
        (sample(
            &m,
            "sonde_push_snapshots_dropped_total",
            &[&sink, "reason=\"spool_full\""],
        )
        .unwrap_or(0.0)
            >= 5.0)
            .then_some(m)
    });
    // The cap plus the segment being written (64 KiB target) plus a record.
    let snapshot = agent.get("/metrics/binary").body.len() as f64;
    let bytes = sample(&m, "sonde_push_spool_bytes", &[]).unwrap();
    assert!(
        bytes <= 2.0 * 65536.0 + 2.0 * snapshot,
        "spool {bytes} bytes"
    );
    let on_disk: u64 = std::fs::read_dir(work.path().join("spool"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        on_disk as f64 <= 2.0 * 65536.0 + 3.0 * snapshot,
        "{on_disk} bytes on disk"
    );
    let peak = peak_rss(pusher.child.id());
    assert!(peak < 100 << 20, "pusher peak RSS {} MiB", peak >> 20);
}

/// Processes whose parent is `ppid`: (pid, real uid, command line).
fn children(ppid: u32) -> Vec<(u32, u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |k: &str| -> Option<u32> {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            };
            (field("PPid:")? == ppid).then_some(())?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            Some((pid, field("Uid:")?, cmd))
        })
        .collect()
}

#[test]
fn the_agent_supervises_the_pusher_as_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = TestServer::start(|_, _| (200, vec![], vec![]));
    let work = tempfile::tempdir().unwrap();
    // `nobody` must reach the spool and its config under the temp dir.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let push = work.path().join("push.toml");
    let spool = work.path().join("spool");
    let agent_port = free_port();
    std::fs::write(
        &push,
        format!(
            "[source]\nurl = \"http://127.0.0.1:{agent_port}\"\ninterval = \"1s\"\n[spool]\npath = \"{}\"\n[listen]\naddress = \"127.0.0.1:0\"\n[[sinks]]\nkind = \"http\"\nurl = \"{}\"\n",
            spool.display(),
            server.url("/in")
        ),
    )
    .unwrap();
    let push = push.display().to_string();
    let agent = Agent::start_with(|c| {
        c.set("listen.address", format!("127.0.0.1:{agent_port}"))
            .set("push.enabled", true)
            .set("push.config", &push)
            .set("push.user", "nobody")
    });
    let agent_pid = agent.child.id();
    let (pid, uid, cmd) = wait_for("the pusher child", Duration::from_secs(10), || {
        children(agent_pid)
            .into_iter()
            .find(|(_, _, c)| c.contains(" push "))
    });
    assert_eq!(uid, 65534, "runs as nobody: {cmd}");
    wait_for(
        "posts from the supervised pusher",
        Duration::from_secs(10),
        || (!server.requests("/in").is_empty()).then_some(()),
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&spool).unwrap());
    assert_eq!(owner, 65534, "the spool belongs to the pusher's user");

    // Killed: restarted (after a 1 s backoff) with a new pid.
    // SAFETY: signalling the agent's child, found in /proc just above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (again, _, _) = wait_for("a restarted pusher", Duration::from_secs(10), || {
        children(agent_pid)
            .into_iter()
            .find(|(p, _, c)| *p != pid && c.contains(" push "))
    });
    assert_ne!(again, pid);

    // Stopping the agent stops the pusher.
    // SAFETY: signalling the agent this test started.
    unsafe { libc::kill(agent_pid as i32, libc::SIGTERM) };
    let mut agent = agent;
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "agent exit {status}");
    assert!(
        !std::path::Path::new(&format!("/proc/{again}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{again}/status")).unwrap_or_default();
            s.contains("State:\tZ")
        },
        "the pusher outlived the agent"
    );
}

/// `native_histograms = true`: each histogram arrives as one native
/// histogram series (Prometheus with native histograms on), its count
/// growing with the agent's, no classic `le` series, and quantiles that
/// Prometheus computes from it.
#[test]
fn native_histograms_reach_a_receiver_that_takes_them() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with(&["scheduler"]);
    let port = free_port();
    let prom = Prometheus::receiver_native(port);
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!("{}native_histograms = true\n", remote_write(port));
    let config = push_config(&dir.path().join("spool"), &agent, "1s", "64MiB", &sinks);
    let _push = start_pusher(dir.path(), &config);
    let t = Duration::from_secs(60);
    let first = wait_for("a native histogram in Prometheus", t, || {
        prom.query("histogram_count(scheduler_runqueue_latency_seconds)")
            .filter(|c| *c > 0.0)
    });
    let later = wait_for("the count to grow", t, || {
        prom.query("histogram_count(scheduler_runqueue_latency_seconds)")
            .filter(|c| *c > first)
    });
    assert!(later > first);
    assert_eq!(
        prom.query_checked("scheduler_runqueue_latency_seconds_bucket"),
        Ok(vec![])
    );
    let p99 = wait_for("a p99 over the native series", t, || {
        prom.query("histogram_quantile(0.99, rate(scheduler_runqueue_latency_seconds[10s]))")
            .filter(|v| v.is_finite())
    });
    assert!(p99 > 0.0 && p99 < 10.0, "p99 {p99} s");
    // Counters are as before.
    assert!(prom
        .query("sum(scheduler_context_switches_total)")
        .is_some_and(|c| c > 0.0));
}

/// Fan-in: several pushers (one per host in a fleet) into one receiver.
/// Each pusher's `[source] labels` keep its series apart; once the agent
/// is gone and every backlog is empty, each pusher's pulls are all in
/// Prometheus, one sample per pull, none under another host's name.
#[test]
fn pushers_fan_in_to_one_receiver_and_lose_nothing() {
    const PUSHERS: usize = 6;
    let agent = Agent::start();
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let prom = Prometheus::receiver(None, port);
    let pushers: Vec<Agent> = (0..PUSHERS)
        .map(|i| {
            let dir = work.path().join(format!("pusher{i}"));
            std::fs::create_dir(&dir).unwrap();
            let config = push_config(
                &dir.join("spool"),
                &agent,
                "1s",
                "512MiB",
                &remote_write(port),
            )
            .replacen(
                "[spool]",
                &format!("labels = {{ instance = \"host-{i}\" }}\n[spool]"),
                1,
            );
            start_pusher(&dir, &config)
        })
        .collect();
    wait_for("every pusher's series", Duration::from_secs(30), || {
        (prom.query("count(count by (instance) (memory_total_bytes))") == Some(PUSHERS as f64))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    // No more pulls (they are on whole seconds: none is under way): what
    // each pusher pulled is all it will deliver.
    after_next_second(Duration::from_millis(500));
    drop(agent);
    let mut stored_total = 0.0;
    for (i, p) in pushers.iter().enumerate() {
        let pulled = wait_for("an empty backlog", Duration::from_secs(30), || {
            let text = p.metrics();
            (total(&text, "sonde_push_backlog", &[]) == 0.0)
                .then(|| total(&text, "sonde_push_pulls_total", &["result=\"ok\""]))
        });
        let q = format!("count_over_time(memory_total_bytes{{instance=\"host-{i}\"}}[10m])");
        // The backlog gauge moves when the sink wakes, a moment after the
        // pull is counted: give the last delivery that moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stored = loop {
            let stored = prom.query(&q).unwrap_or(0.0);
            if stored == pulled || Instant::now() > deadline {
                break stored;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        eprintln!("host-{i}: pulled {pulled}, stored {stored}");
        assert!(pulled >= 5.0, "host-{i} pulled {pulled}");
        assert_eq!(stored, pulled, "host-{i}: stored {stored} of {pulled}");
        stored_total += stored;
    }
    // No sample without a host, none counted twice.
    assert_eq!(
        prom.query("count_over_time(memory_total_bytes{instance=\"\"}[10m])"),
        None
    );
    assert_eq!(
        prom.query("sum(count_over_time(memory_total_bytes[10m]))"),
        Some(stored_total)
    );
}
