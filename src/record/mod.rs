//! `sonde record`: pulls an agent's `/metrics/binary` (Sonde's or
//! Rezolus's) at wall-clock-aligned intervals into a spool beside the
//! output, then writes one parquet file (see [`crate::parquet`]). A crash loses
//! nothing spooled; Ctrl-C, the end of `--duration` or of `-- COMMAND`
//! finish the file, which appears whole or not at all.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::parquet::{self, SpoolSnapshots};
use crate::runtime::{self, Events, Ticker};
use crate::snapshot::fetch;
use crate::spool::{Entry, Spool};

/// What `sonde record` was asked to do.
#[derive(Debug)]
pub struct Options {
    /// The agent's base URL (`…/metrics/binary` is pulled).
    pub url: String,
    pub output: PathBuf,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub force: bool,
    /// Continue the spool an interrupted run left (crash, full disk).
    pub resume: bool,
    /// Record for this command's lifetime and exit with its status.
    pub command: Vec<String>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `sonde record`; returns the process exit code.
pub fn run(o: Options) -> anyhow::Result<u8> {
    if o.output.exists() && !o.force {
        anyhow::bail!("{} exists; pass --force to replace it", o.output.display());
    }
    let dir = match o.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        anyhow::bail!("{}: no such directory", dir.display());
    }
    let spool_dir = spool_dir_of(&o.output);
    if spool_dir.exists() && !o.resume && !o.force {
        anyhow::bail!(
            "{} holds the snapshots of an interrupted recording: pass --resume to \
             continue it (and write them all), or --force to discard it",
            spool_dir.display()
        );
    }
    runtime::build("sonde-record")?.block_on(record(o, spool_dir))
}

async fn record(o: Options, spool_dir: PathBuf) -> anyhow::Result<u8> {
    let events = Events::watch();
    // Subscribed before the first pull, so a Ctrl-C during it is not lost.
    let shutdown = events.shutdown();
    tokio::pin!(shutdown);
    let client = crate::client::shared();
    let url = fetch::binary_url(&o.url);
    let timeout = o
        .interval
        .clamp(Duration::from_millis(100), Duration::from_secs(10));
    // The agent must answer before anything is created.
    let (first, body) =
        fetch::snapshot(&client, &url, &Default::default(), Duration::from_secs(10))
            .await
            .map_err(|e| anyhow::anyhow!("cannot record {url}: {e}"))?;
    let descriptions = fetch::optional_json(&client, &o.url, "/metrics/descriptions").await;
    let systeminfo = fetch::optional_json(&client, &o.url, "/systeminfo").await;
    // An interrupted run's snapshots go only once the agent has answered.
    if o.force && !o.resume && spool_dir.exists() {
        std::fs::remove_dir_all(&spool_dir)
            .with_context(|| format!("cannot remove {}", spool_dir.display()))?;
    }
    let spool = Spool::open(&spool_dir, u64::MAX, u64::MAX)
        .with_context(|| format!("cannot create {}", spool_dir.display()))?;
    let spool = Mutex::new(spool);
    let append = |ms: u64, body: &[u8]| -> anyhow::Result<()> {
        spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(ms, body)
            .with_context(|| format!("cannot write to {}", spool_dir.display()))?;
        Ok(())
    };
    let mut last_ms = unix_ms(first.stamp.systemtime);
    append(last_ms, &body)?;

    let mut child = match o.command.split_first() {
        Some((prog, args)) => match tokio::process::Command::new(prog).args(args).spawn() {
            Ok(c) => Some(c),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&spool_dir);
                return Err(anyhow::anyhow!("cannot start `{prog}`: {e}"));
            }
        },
        None => None,
    };
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut samples = 1u64;
    let mut failures = 0u64;
    let mut last_error: Option<String> = None;
    let mut ticker = Ticker::new(o.interval);
    let mut signalled = false;
    let mut status: Option<std::process::ExitStatus> = None;
    let mut write_error = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut shutdown, if !signalled => {
                signalled = true;
                match &child {
                    None => break,
                    // Sent to sonde alone (kill, systemctl, timeout): pass
                    // it on and record until the command has ended.
                    Some(c) => {
                        if let Some(pid) = c.id() {
                            // SAFETY: kill with our child's pid and a valid signal.
                            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                        }
                    }
                }
            }
            st = async { child.as_mut().expect("guarded").wait().await }, if child.is_some() && status.is_none() => {
                status = Some(st.context("cannot wait for the command")?);
                child = None;
                // One last sample: the command's end is in the file.
            }
        }
        match fetch::snapshot(&client, &url, &Default::default(), timeout).await {
            Ok((s, body)) => {
                let ms = unix_ms(s.stamp.systemtime);
                // The unaligned first pull and the first tick can fall in
                // one agent TTL: the same snapshot is one row, not two.
                if ms != last_ms {
                    if let Err(e) = append(ms, &body) {
                        // Disk full or gone: stop and write what is spooled.
                        tracing::error!("{e:#}; recording stops");
                        write_error = Some(e);
                        break;
                    }
                    last_ms = ms;
                    samples += 1;
                }
            }
            Err(e) => {
                failures += 1;
                if last_error.as_deref() != Some(&e.to_string()) {
                    tracing::warn!("cannot pull {url}: {e}");
                    last_error = Some(e.to_string());
                }
            }
        }
        if progress {
            let bytes = spool.lock().unwrap_or_else(|p| p.into_inner()).bytes();
            // Not eprint!: a terminal that went away must not panic the
            // recording (the same for the lines below).
            let _ = write!(
                std::io::stderr(),
                "\rrecording {}: {samples} samples, {:.1} MB spooled, {:.0} s{}   ",
                o.url,
                bytes as f64 / 1e6,
                started.elapsed().as_secs_f64(),
                if failures > 0 {
                    format!(", {failures} pulls failed")
                } else {
                    String::new()
                }
            );
        }
        if status.is_some() || o.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    if let Some(c) = child.as_mut() {
        // Ctrl-C reaches the command too (same process group); wait for it.
        status = Some(c.wait().await.context("cannot wait for the command")?);
    }
    if progress {
        let _ = writeln!(std::io::stderr());
    }

    let metadata = parquet::file_metadata(o.interval, descriptions, systeminfo);
    let output = o.output.clone();
    let spool_path = spool_dir.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let entries: Vec<Entry> = spool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries()
            .copied()
            .collect();
        let mut source = SpoolSnapshots {
            spool: &spool,
            entries,
            skipped: 0,
        };
        parquet::write(&output, &metadata, &mut source)
    })
    .await
    .context("the writer panicked")?;
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            return Err(e.context(format!(
                "the snapshots stay in {}: free space and rerun with --resume to \
                 finish the file",
                spool_path.display()
            )))
        }
    };
    let _ = std::fs::remove_dir_all(&spool_dir);
    let _ = writeln!(
        std::io::stderr(),
        "sonde record: wrote {}: {} rows, {} columns, {:.1} MB, {:.0} s{}",
        o.output.display(),
        summary.rows,
        summary.columns,
        summary.bytes as f64 / 1e6,
        summary.last_ns.saturating_sub(summary.first_ns) as f64 / 1e9,
        if failures > 0 {
            format!(", {failures} pulls failed (gaps are missing rows)")
        } else {
            String::new()
        }
    );
    if let Some(e) = write_error {
        return Err(e.context("recording stopped early; the file holds what was recorded"));
    }
    Ok(match status {
        None => 0,
        Some(st) => exit_code(st),
    })
}

/// A command's exit status as our own: its code, or 128 + its signal.
fn exit_code(st: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.saturating_add(sig as u8),
        _ => 1,
    }
}

/// Where a recording of `output` spools: hidden, beside it (same disk,
/// so the final rename is atomic and the user sees where space goes).
pub fn spool_dir_of(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map_or_else(|| "recording".into(), |n| n.to_string_lossy().into_owned());
    output.with_file_name(format!(".{name}.spool"))
}
