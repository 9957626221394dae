//! `sonde mcp` against real data and real clients. A real agent is
//! recorded while four incidents are injected in known windows, with quiet
//! gaps between them: a CPU burner in a cgroup, a syscall storm, an
//! O_DIRECT write burst and run-queue contention. detect_anomalies and
//! what_changed, asked over the protocol, must put each incident's
//! subsystem in their top 3, detect_anomalies with the window within 5 s.
//! A quiet recording's findings are counted and bounded. The official
//! Python SDK then drives the server over the incident recording
//! (tests/mcp_client.py: every tool, results validated against their
//! output schemas, errors as isError).

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A client of `sonde mcp` speaking JSON-RPC over its stdio, one line per
/// message as the stdio transport has it.
struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    id: u64,
}

impl Mcp {
    fn start(recording: &Path) -> Mcp {
        let mut child = Command::new(BIN)
            .args(["mcp", recording.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run sonde mcp");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut m = Mcp {
            child,
            stdin,
            stdout,
            id: 0,
        };
        let init = m.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "sonde-test", "version": "1"}}),
        );
        assert_eq!(init["serverInfo"]["name"], "sonde", "{init}");
        m.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        m
    }

    fn send(&mut self, msg: Value) {
        writeln!(self.stdin, "{msg}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "sonde mcp closed stdout while {method} was pending");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// A tool's structured answer; a tool error fails the test.
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        assert_ne!(r["isError"], true, "{tool} {args}: {r}");
        r["structuredContent"].clone()
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One injected incident: its window in unix seconds, and the metric
/// families (or series) that are its subsystem.
struct Incident {
    name: &'static str,
    families: &'static [&'static str],
    from: f64,
    to: f64,
}

impl Incident {
    /// A pattern with `{` is a series' prefix, others a family's.
    fn is_ours(&self, finding: &Value) -> bool {
        let family = finding["family"].as_str().unwrap();
        let series = finding["series"].as_str().unwrap();
        self.families.iter().any(|p| {
            if p.contains('{') {
                series.starts_with(p)
            } else {
                family.starts_with(p)
            }
        })
    }
}

const CPU_PRESSURE: [&str; 2] = [
    "pressure_stall{kind=\"some\", resource=\"cpu\"}",
    "pressure_stall{kind=\"full\", resource=\"cpu\"}",
];

const QUIET: Duration = Duration::from_secs(15);
const BURST: Duration = Duration::from_secs(10);

/// Spins until `stop`; a CPU-bound thread that makes no syscalls.
fn spin(stop: &AtomicBool) {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

/// One writer, O_DIRECT | O_DSYNC, 64 KiB at a time over a 16 MiB file
/// for `d`: block I/O and nothing else (no process started per write).
fn direct_writes(path: &Path, d: Duration) {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .unwrap();
    // O_DIRECT wants a buffer aligned to the logical block size.
    let layout = std::alloc::Layout::from_size_align(64 << 10, 4096).unwrap();
    // SAFETY: a non-zero size; zeroed memory is a valid byte buffer, freed below.
    let buf = unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        assert!(!p.is_null());
        std::slice::from_raw_parts_mut(p, layout.size())
    };
    let t = Instant::now();
    let mut i = 0u64;
    while t.elapsed() < d {
        f.write_all_at(buf, (i % 256) * (64 << 10)).unwrap();
        i += 1;
    }
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf.as_mut_ptr(), layout) };
}

/// Runs `work` for BURST, returning its window.
fn inject(work: impl FnOnce(Duration)) -> (f64, f64) {
    let from = unix_now();
    work(BURST);
    (from, unix_now())
}

/// The four incidents, each after a quiet gap, and a quiet gap at the end.
fn incidents(scratch: &Path) -> Vec<Incident> {
    let mut out = Vec::new();
    let mut add = |name, families, (from, to)| {
        out.push(Incident {
            name,
            families,
            from,
            to,
        });
        std::thread::sleep(QUIET);
    };
    // Past the agent's and the recorder's own start.
    std::thread::sleep(QUIET + Duration::from_secs(10));
    // One busy shell in its own cgroup: half of this 2-CPU machine.
    let cg = common::cgroup::TestCgroup::new("/sondetest_mcp.slice/burner");
    add(
        "CPU burner in a cgroup",
        &[
            "cpu_usage",
            "container_cpu",
            "cgroup_oncpu",
            // The time a task runs before it leaves the CPU.
            "scheduler_running",
            CPU_PRESSURE[0],
            CPU_PRESSURE[1],
        ][..],
        inject(|d| {
            let mut c = cg
                .command("sh", &["-c", "while :; do :; done"])
                .spawn()
                .unwrap();
            std::thread::sleep(d);
            c.kill().unwrap();
            c.wait().unwrap();
        }),
    );
    add(
        "syscall storm",
        &["syscall", "cgroup_syscalls"][..],
        inject(|d| {
            let t = Instant::now();
            while t.elapsed() < d {
                getppid_calls(100_000);
            }
        }),
    );
    let file = scratch.join("odirect");
    add(
        "O_DIRECT write burst",
        &[
            "blockio",
            "disk_",
            "pressure_stall{kind=\"some\", resource=\"io\"}",
            "pressure_stall{kind=\"full\", resource=\"io\"}",
        ][..],
        inject(|d| direct_writes(&file, d)),
    );
    // Three spinners per CPU: each waits on the run queue most of the time.
    add(
        "run-queue contention",
        &[
            "scheduler_",
            "cgroup_runqueue",
            // Pressure on the CPU is time spent runnable but waiting.
            CPU_PRESSURE[0],
            CPU_PRESSURE[1],
        ][..],
        inject(|d| {
            let stop = Arc::new(AtomicBool::new(false));
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
            let spinners: Vec<_> = (0..3 * cpus)
                .map(|_| {
                    let stop = Arc::clone(&stop);
                    std::thread::spawn(move || spin(&stop))
                })
                .collect();
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
            spinners.into_iter().for_each(|s| s.join().unwrap());
        }),
    );
    drop(cg);
    out
}

/// The rank (1-based) of the first entry of `list` whose family is the
/// incident's, with that entry.
fn ranked<'a>(list: &'a Value, i: &Incident) -> Option<(usize, &'a Value)> {
    list.as_array()
        .unwrap()
        .iter()
        .find(|f| i.is_ours(f))
        .map(|f| (f["rank"].as_u64().unwrap() as usize, f))
}

fn families(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .take(5)
        .map(|f| f["family"].as_str().unwrap())
        .collect()
}

fn keep(dir: &Path, name: &str) -> PathBuf {
    // Kept under target/ for a look after a failure.
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::copy(dir.join(name), &kept);
    kept
}

#[test]
fn incidents_are_found_and_a_quiet_recording_stays_quiet() {
    if !bpf_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // O_DIRECT needs a real disk, not the tmpfs a tempdir may be on.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let agent = Agent::start();
    let rec = dir.path().join("incidents.parquet");
    let incidents = record(&agent, &rec, || incidents(scratch.path()));
    let quiet = dir.path().join("quiet.parquet");
    record(&agent, &quiet, || {
        std::thread::sleep(Duration::from_secs(60))
    });
    drop(agent);
    let kept = keep(dir.path(), "incidents.parquet");
    keep(dir.path(), "quiet.parquet");

    let mut mcp = Mcp::start(&rec);
    let mut table = vec![
        "| incident | detect_anomalies rank | window error (start / end) | what_changed rank | top 5 found |"
            .to_string(),
    ];
    table.push("|---|---|---|---|---|".to_string());
    let mut failures = Vec::new();
    for i in &incidents {
        // The incident with the quiet gaps around it.
        let (from, to) = (i.from - 12.0, i.to + 12.0);
        let found = mcp.call(
            "detect_anomalies",
            json!({"start": format!("{from:.3}"), "end": format!("{to:.3}")}),
        );
        let changed = mcp.call(
            "what_changed",
            json!({"start": format!("{:.3}", i.from), "end": format!("{:.3}", i.to)}),
        );
        let a = ranked(&found["findings"], i);
        let c = ranked(&changed["changes"], i);
        let error = a.map(|(_, f)| {
            (
                f["window"]["from_unix"].as_f64().unwrap() - i.from,
                f["window"]["to_unix"].as_f64().unwrap() - i.to,
            )
        });
        table.push(format!(
            "| {} | {} | {} | {} | {:?} |",
            i.name,
            a.map_or("not found".into(), |(r, _)| r.to_string()),
            error.map_or("-".into(), |(s, e)| format!("{s:+.1} s / {e:+.1} s")),
            c.map_or("not found".into(), |(r, _)| r.to_string()),
            families(&found["findings"]),
        ));
        match a {
            Some((r, _)) if r <= 3 => {}
            _ => failures.push(format!(
                "{}: detect_anomalies top 3 {:?}",
                i.name,
                families(&found["findings"])
            )),
        }
        if let Some((s, e)) = error {
            if s.abs() > 5.0 || e.abs() > 5.0 {
                failures.push(format!("{}: window off by {s:+.1} s / {e:+.1} s", i.name));
            }
        }
        match c {
            Some((r, _)) if r <= 3 => {}
            _ => failures.push(format!(
                "{}: what_changed top 3 {:?}",
                i.name,
                families(&changed["changes"])
            )),
        }
    }
    drop(mcp);

    // The official SDK over the same recording.
    let py = Command::new("python3")
        .arg(repo().join("tests/mcp_client.py"))
        .args([BIN, rec.to_str().unwrap()])
        .output()
        .expect("run python3 tests/mcp_client.py");
    eprintln!(
        "mcp_client.py: {}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    if !py.status.success() {
        failures.push(format!(
            "the Python SDK's client failed: {}",
            String::from_utf8_lossy(&py.stderr)
        ));
    }

    let mut mcp = Mcp::start(&quiet);
    let found = mcp.call("detect_anomalies", json!({"top": 100}));
    let findings = found["findings"].as_array().unwrap();
    let scanned = found["signals_scanned"].as_u64().unwrap();
    // Findings whose windows overlap are one event seen by several
    // families (a read shows in blockio_*, disk_* and syscalls at once).
    let mut windows: Vec<(f64, f64)> = findings
        .iter()
        .map(|f| {
            let w = &f["window"];
            (
                w["from_unix"].as_f64().unwrap(),
                w["to_unix"].as_f64().unwrap(),
            )
        })
        .collect();
    windows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut events: Vec<(f64, f64)> = Vec::new();
    for (from, to) in windows {
        match events.last_mut() {
            Some(e) if from <= e.1 => e.1 = e.1.max(to),
            _ => events.push((from, to)),
        }
    }
    table.push(format!(
        "\nquiet 60 s recording: {} findings in {} events over {scanned} signals: {:?}",
        findings.len(),
        events.len(),
        families(&found["findings"])
    ));
    eprintln!("{}", table.join("\n"));
    // Nothing was injected, but the machine is shared: another process's
    // burst is a real event. Three such events a minute at most, and never
    // one finding per family.
    if events.len() > 3 || findings.len() > 10 {
        failures.push(format!(
            "{} findings in {} events on a quiet recording",
            findings.len(),
            events.len()
        ));
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\n(recording kept at {})",
        kept.display()
    );
}

/// A source that cannot be read fails at once, with what is wrong, before
/// any client waits on a handshake.
#[test]
fn a_bad_source_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.parquet");
    let torn = dir.path().join("torn.parquet");
    // A parquet file cut short: its magic, no footer.
    std::fs::write(&torn, [b"PAR1".as_slice(), &[0u8; 4096]].concat()).unwrap();
    for (path, says) in [
        (&missing, "no such file"),
        (&torn, "not a readable parquet file"),
    ] {
        let out = Command::new(BIN)
            .arg("mcp")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            out.stdout.is_empty(),
            "stdout is the protocol's: {:?}",
            out.stdout
        );
    }
}
