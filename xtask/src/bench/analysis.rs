//! The engine on a big file: a day at 1 s of a full agent (written once
//! by tests/bench_day.rs from the bench agent's own series, kept under
//! target/bench), opened and queried by `sonde query`, and analysed by
//! `sonde mcp`'s detect_anomalies: wall time and peak RSS of each, the
//! median of three runs.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::sonde_bin;

pub struct Row {
    pub what: String,
    pub wall: Duration,
    pub peak_rss: u64,
    pub target: &'static str,
    pub note: String,
}

pub struct Analysis {
    pub file_bytes: u64,
    pub rows: Vec<Row>,
}

const RUNS: usize = 3;

/// The day's file, written when missing.
fn day(port: u16) -> Result<PathBuf> {
    let path = crate::target_dir().join("bench/day.parquet");
    if path.exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(path.parent().unwrap())?;
    eprintln!(
        "xtask: bench: writing a 24 h recording (once; kept at {})",
        path.display()
    );
    crate::status(
        crate::cargo()
            .args(["test", "--release", "--test", "bench_day", "--"])
            .args(["--ignored", "--exact", "synthesize_a_day", "--nocapture"])
            .env("SONDE_BENCH_URL", format!("http://127.0.0.1:{port}"))
            .env("SONDE_BENCH_DAY", &path),
    )
    .context("cannot write the 24 h recording (tests/bench_day.rs)")?;
    Ok(path)
}

/// Waits for `child` and returns its peak RSS (wait4's ru_maxrss).
fn reap(child: &std::process::Child) -> Result<(i32, u64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, which nothing else reaps.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok((status, usage.ru_maxrss as u64 * 1024))
}

/// `sonde ARGS`: wall time, peak RSS, stdout.
fn run(args: &[&str]) -> Result<(Duration, u64, String)> {
    let t = Instant::now();
    let mut child = Command::new(sonde_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out)?;
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err)?;
    let (status, rss) = reap(&child)?;
    let wall = t.elapsed();
    if status != 0 {
        bail!("sonde {}: {err}", args.join(" "));
    }
    Ok((wall, rss, out))
}

/// detect_anomalies over the whole file, through the protocol: from the
/// call to its answer, and the server's peak RSS.
fn anomalies(file: &Path) -> Result<(Duration, u64, String)> {
    let mut child = Command::new(sonde_bin())
        .args(["mcp", file.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"xtask","version":"1"}}}"#;
    writeln!(stdin, "{init}")?;
    stdout.read_line(&mut line)?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )?;
    let t = Instant::now();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"detect_anomalies","arguments":{{"top":3}}}}}}"#
    )?;
    line.clear();
    stdout.read_line(&mut line)?;
    let wall = t.elapsed();
    drop(stdin);
    let (_, rss) = reap(&child)?;
    let v: serde_json::Value = serde_json::from_str(&line).context("detect_anomalies' answer")?;
    let top = &v["result"]["structuredContent"]["findings"][0];
    if top.is_null() {
        bail!("detect_anomalies found nothing in the day: {line}");
    }
    let note = format!(
        "top: {} {}, {}",
        top["family"].as_str().unwrap_or("?"),
        top["direction"].as_str().unwrap_or("?"),
        top["window"]["from"].as_str().unwrap_or("?")
    );
    Ok((wall, rss, note))
}

fn median(mut v: Vec<(Duration, u64, String)>) -> (Duration, u64, String) {
    let rss = v.iter().map(|r| r.1).max().unwrap_or(0);
    v.sort_by_key(|r| r.0);
    let m = v.swap_remove(v.len() / 2);
    (m.0, rss, m.2)
}

pub fn measure(port: u16) -> Result<Analysis> {
    let file = day(port)?;
    let f = file.to_str().unwrap();
    let mut rows = Vec::new();
    let cases: [(&str, Vec<&str>, &'static str); 3] = [
        (
            "open + instant query (sum(rate(syscalls[1m])) at the end)",
            vec!["query", f, "sum(rate(syscalls[1m]))"],
            "< 1 s",
        ),
        (
            "range query, 24 h, 1000 steps: sum by (op) (rate(syscalls[1m]))",
            vec!["query", f, "sum by (op) (rate(syscalls[1m]))", "--format", "json"],
            "< 1 s",
        ),
        (
            "range query, 24 h, 1000 steps: histogram_quantile(0.99, rate(scheduler_runqueue_latency[1m]))",
            vec![
                "query",
                f,
                "histogram_quantile(0.99, rate(scheduler_runqueue_latency[1m]))",
                "--format",
                "json",
            ],
            "< 1 s",
        ),
    ];
    for (what, args, target) in cases {
        let runs = (0..RUNS).map(|_| run(&args)).collect::<Result<Vec<_>>>()?;
        let (wall, peak_rss, out) = median(runs);
        rows.push(Row {
            what: what.into(),
            wall,
            peak_rss,
            target,
            note: format!("{} bytes out", out.len()),
        });
    }
    let runs = (0..RUNS)
        .map(|_| anomalies(&file))
        .collect::<Result<Vec<_>>>()?;
    let (wall, peak_rss, note) = median(runs);
    rows.push(Row {
        what: "sonde mcp detect_anomalies, every series, 24 h (2000 steps)".into(),
        wall,
        peak_rss,
        target: "-",
        note,
    });
    Ok(Analysis {
        file_bytes: std::fs::metadata(&file).map_or(0, |m| m.len()),
        rows,
    })
}
