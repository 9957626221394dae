//! The flight recorder's cost: `sonde record` pulling a full agent (every
//! sampler) at 1 s, its CPU per sample and peak RSS, and the time to write
//! the parquet file at the end.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::proc::Proc;
use super::sonde_bin;

pub struct Recorder {
    pub secs: u64,
    pub samples: u64,
    /// CPU while recording (after the first sample), per sample.
    pub cpu_per_sample: Duration,
    pub peak_rss: u64,
    pub file_bytes: u64,
    /// Wall time from Ctrl-C to exit: writing the file.
    pub write: Duration,
}

pub fn measure(port: u16, dir: &Path, secs: u64) -> Result<Recorder> {
    let out = dir.join("bench-recording.parquet");
    let _ = std::fs::remove_file(&out);
    let url = format!("http://127.0.0.1:{port}");
    let p = Proc::spawn(
        &sonde_bin(),
        &[
            "record",
            &url,
            "-o",
            out.to_str().unwrap(),
            "--interval",
            "1s",
        ],
    )?;
    // Past startup and the first pull (descriptions, systeminfo).
    std::thread::sleep(Duration::from_secs(2));
    let c0 = p.cpu();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = p.cpu().saturating_sub(c0);
    let (_, peak_rss) = p.rss();
    let t = Instant::now();
    let log = p.interrupt().context("sonde record")?;
    let write = t.elapsed();
    let samples: u64 = log
        .lines()
        .find(|l| l.starts_with("sonde record: wrote"))
        .and_then(|l| l.split(": ").nth(2))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no summary line from sonde record: {log}"))?;
    let file_bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
    let _ = std::fs::remove_file(&out);
    Ok(Recorder {
        secs,
        samples,
        cpu_per_sample: cpu / secs.max(1) as u32,
        peak_rss,
        file_bytes,
        write,
    })
}
