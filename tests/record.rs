//! `sonde record` and `sonde hindsight` against a real agent: the files
//! they write are read back by pyarrow and by metriken-query (the reader of
//! Rezolus's viewer).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bpf_or_skip, getppid_calls, Agent, BIN};

/// Reads a recording with pyarrow and returns what it saw as JSON.
fn pyarrow(path: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
import pyarrow.parquet as pq
path = sys.argv[1]
t = pq.read_table(path)
meta = {k.decode(): v.decode() for k, v in (pq.read_metadata(path).metadata or {}).items()}
ts = t.column("timestamp").to_pylist()
syscalls = [f.name for f in t.schema if (f.metadata or {}).get(b"metric") == b"syscalls"]
first = sum(t.column(c)[0].as_py() or 0 for c in syscalls)
last = sum(t.column(c)[t.num_rows - 1].as_py() or 0 for c in syscalls)
hist = {}
for f in t.schema:
    m = f.metadata or {}
    if m.get(b"metric_type") == b"histogram":
        gp, mvp = int(m[b"grouping_power"]), int(m[b"max_value_power"])
        lengths = {len(v) for v in t.column(f.name).to_pylist() if v is not None}
        hist[f.name] = {"expected": (mvp - gp + 1) << gp, "lengths": sorted(lengths)}
types = sorted({str(f.type) for f in t.schema})
print(json.dumps({"rows": t.num_rows, "timestamps": ts, "syscalls_delta": last - first,
                  "histograms": hist, "types": types, "metadata": sorted(meta)}))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pyarrow could not read {}: {} (`cargo xtask test` installs pyarrow)",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn record(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("record")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn record_ten_seconds_readable_by_pyarrow_and_metriken() {
    if !bpf_or_skip() {
        return;
    }
    let agent = common::agent_with(&["syscall", "scheduler", "cpu"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.parquet");
    let base = agent.url("");
    let driven = 200_000;
    let recorder = std::thread::spawn({
        let out = out.clone();
        move || record(&[&base, "-o", out.to_str().unwrap(), "--duration", "10s"])
    });
    std::thread::sleep(Duration::from_secs(3));
    getppid_calls(driven);
    let result = recorder.join().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "record failed: {stderr}");
    assert!(stderr.contains("sonde record: wrote"), "{stderr}");
    assert!(
        !dir.path().join(".run.parquet.spool").exists(),
        "the spool is removed after the file is written"
    );

    let seen = pyarrow(&out);
    let rows = seen["rows"].as_u64().unwrap();
    assert!(rows >= 9, "{rows} rows in 10 s at 1 s");
    let ts: Vec<u64> = serde_json::from_value(seen["timestamps"].clone()).unwrap();
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "timestamps not increasing: {ts:?}"
    );
    assert!(
        seen["syscalls_delta"].as_u64().unwrap() >= driven,
        "syscalls grew by less than the {driven} driven: {seen}"
    );
    let hist = seen["histograms"].as_object().unwrap();
    assert!(
        hist.contains_key("scheduler_runqueue_latency:buckets"),
        "{seen}"
    );
    for (name, h) in hist {
        assert_eq!(h["lengths"], serde_json::json!([h["expected"]]), "{name}");
    }
    assert_eq!(
        seen["types"],
        serde_json::json!(["int64", "list<item: uint64>", "uint64"])
    );
    for key in [
        "sampling_interval_ms",
        "source",
        "version",
        "descriptions",
        "systeminfo",
        "per_source_metadata",
    ] {
        assert!(
            seen["metadata"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == key),
            "file metadata lacks {key}: {seen}"
        );
    }

    // Rezolus's viewer reads it with metriken-query.
    let reader = metriken_query::ParquetReader::open(&out).unwrap();
    assert!(reader.counter_names().iter().any(|n| n == "syscalls"));
    assert!(reader.gauge_names().iter().any(|n| n == "cpu_cores"));
    assert!(reader
        .histogram_names()
        .iter()
        .any(|n| n == "scheduler_runqueue_latency"));
    assert!(reader
        .counter_labels("syscalls")
        .iter()
        .any(|l| l.get("op").is_some_and(|v| v == "read")));
    assert_eq!(reader.sample_timestamps().len() as u64, rows);
    assert_eq!(reader.source(), "sonde");
    assert_eq!(reader.interval(), 1.0);
}

#[test]
fn record_for_a_command_exits_with_its_status() {
    let agent = Agent::start_with(|c| c.set("defaults.enabled", false));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmd.parquet");
    let started = Instant::now();
    let r = record(&[
        &agent.url(""),
        "-o",
        out.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "sleep 2.5; exit 7",
    ]);
    assert_eq!(
        r.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(pyarrow(&out)["rows"].as_u64().unwrap() >= 3);

    // Ctrl-C finishes the file: a valid parquet, exit 0.
    let interrupted = dir.path().join("interrupted.parquet");
    let child = Command::new(BIN)
        .args([
            "record",
            &agent.url(""),
            "-o",
            interrupted.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: kill with our child's pid and a valid signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let ended = child.wait_with_output().unwrap();
    assert!(
        ended.status.success(),
        "{}",
        String::from_utf8_lossy(&ended.stderr)
    );
    assert!(pyarrow(&interrupted)["rows"].as_u64().unwrap() >= 2);

    // An existing output is not replaced without --force.
    let r = record(&[
        &agent.url(""),
        "-o",
        out.to_str().unwrap(),
        "--duration",
        "1s",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--force"));
    let r = record(&[
        &agent.url(""),
        "-o",
        out.to_str().unwrap(),
        "--duration",
        "1s",
        "--force",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // kill -9 mid-recording: the spool keeps what was taken, a plain rerun
    // refuses to overwrite it, --resume continues it into one file.
    let crashed = dir.path().join("crashed.parquet");
    let mut child = Command::new(BIN)
        .args(["record", &agent.url(""), "-o", crashed.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!crashed.exists());
    let r = record(&[
        &agent.url(""),
        "-o",
        crashed.to_str().unwrap(),
        "--duration",
        "1s",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--resume"));
    let r = record(&[
        &agent.url(""),
        "-o",
        crashed.to_str().unwrap(),
        "--duration",
        "2s",
        "--resume",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rows = pyarrow(&crashed)["rows"].as_u64().unwrap();
    assert!(rows >= 3 + 2, "{rows} rows: the crashed run's were lost");

    // No agent: a clear error, nothing written.
    drop(agent);
    let gone = dir.path().join("none.parquet");
    let port = common::free_port();
    let r = record(&[
        &format!("http://127.0.0.1:{port}"),
        "-o",
        gone.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("cannot record"));
    assert!(!gone.exists() && !dir.path().join(".none.parquet.spool").exists());

    // Not an agent: the fetch's checks apply.
    let r = record(&[
        "http://127.0.0.1:1",
        "-o",
        gone.to_str().unwrap(),
        "--interval",
        "10ms",
    ]);
    assert_eq!(
        r.status.code(),
        Some(2),
        "--interval under 100ms is refused"
    );
}

fn hindsight(dir: &Path, agent: &Agent) -> Agent {
    let config = dir.join("hindsight.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\ninterval = \"1s\"\n\n[buffer]\npath = \"{}\"\nduration = \"30s\"\nmax_bytes = \"64MiB\"\n\n[dump]\noutput_dir = \"{}\"\n\n[listen]\naddress = \"127.0.0.1:0\"\n",
            agent.url(""),
            dir.join("buffer").display(),
            dir.join("dumps").display()
        ),
    )
    .unwrap();
    Agent::spawn(
        &["hindsight", config.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "hindsight",
    )
}

fn dump(h: &Agent, query: &str) -> serde_json::Value {
    let r = common::request("POST", &h.url(&format!("/dump{query}")), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn hindsight_keeps_the_window_survives_kill_and_dumps() {
    let agent = common::agent_with(&["cpu", "memory"]);
    let dir = tempfile::tempdir().unwrap();
    let mut h = hindsight(dir.path(), &agent);
    // 30 s window, recorded over 60 s.
    std::thread::sleep(Duration::from_secs(60));
    let d = dump(&h, "");
    let span = d["to"].as_f64().unwrap() - d["from"].as_f64().unwrap();
    assert!(
        (28.9..=31.0).contains(&span),
        "a 30 s window dumped {span} s: {d}"
    );
    // A pull that timed out (a loaded machine) is a counted missing row.
    let errors = common::total(
        &h.metrics(),
        "sonde_hindsight_pulls_total",
        &["result=\"error\""],
    ) as u64;
    let rows = pyarrow(Path::new(d["path"].as_str().unwrap()))["rows"]
        .as_u64()
        .unwrap();
    assert!(
        (29 - errors.min(29)..=31).contains(&rows),
        "{rows} rows, {errors} failed pulls"
    );
    assert_eq!(d["skipped"], 0, "{d}");
    let metrics = h.metrics();
    for family in [
        "sonde_hindsight_pulls_total",
        "sonde_hindsight_buffer_samples",
        "sonde_hindsight_buffer_bytes",
        "sonde_hindsight_buffer_span_seconds",
        "sonde_hindsight_dumps_total",
    ] {
        assert!(
            metrics.contains(&format!("\n{family}")),
            "{family} not served: {metrics}"
        );
    }
    assert!(common::total(&metrics, "sonde_hindsight_buffer_span_seconds", &[]) >= 29.0);
    let bytes = common::total(&metrics, "sonde_hindsight_buffer_bytes", &[]);
    assert!(bytes > 0.0 && bytes <= 64.0 * 1024.0 * 1024.0, "{bytes}");
    assert!(common::total(&metrics, "sonde_hindsight_dumps_total", &["result=\"ok\""]) >= 1.0);

    // ?last= takes the newest part of the window.
    let d = dump(&h, "?last=5s");
    let rows = pyarrow(Path::new(d["path"].as_str().unwrap()))["rows"]
        .as_u64()
        .unwrap();
    assert!((4..=6).contains(&rows), "last=5s gave {rows} rows");
    let bad = common::request("POST", &h.url("/dump?last=soon"), &[]);
    assert_eq!(bad.status, 400);

    // SIGUSR1 dumps too: a new, complete file (never the hidden .tmp).
    let dumps = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join("dumps"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                !name.starts_with('.') && name.ends_with(".parquet")
            })
            .collect()
    };
    let before = dumps();
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(h.child.id() as i32, libc::SIGUSR1) };
    let new = common::wait_for("a SIGUSR1 dump", Duration::from_secs(10), || {
        dumps().into_iter().find(|p| !before.contains(p))
    });
    let seen = pyarrow(&new);
    assert!(seen["rows"].as_u64().unwrap() >= 28, "{seen}");
    assert!(
        seen["metadata"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "descriptions"),
        "a dump carries the agent's descriptions: {seen}"
    );

    // kill -9 loses at most the sample in flight: after a restart the
    // window still ends within an interval of the kill and is still full.
    h.child.kill().unwrap();
    h.child.wait().unwrap();
    let killed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let h = hindsight(dir.path(), &agent);
    let d = dump(&h, "");
    let seen = pyarrow(Path::new(d["path"].as_str().unwrap()));
    let ts: Vec<u64> = serde_json::from_value(seen["timestamps"].clone()).unwrap();
    assert!(
        ts.iter()
            .any(|&t| (killed - 2.0..=killed).contains(&(t as f64 / 1e9))),
        "no sample from the last 2 s before kill -9 at {killed}: {ts:?}"
    );
    assert!(
        ts.len() >= 28,
        "{} rows after kill -9 and restart",
        ts.len()
    );
}
