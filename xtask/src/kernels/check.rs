//! Turns each kernel's run directory into checks and the matrix: which
//! hook each sampler used, whether its programs attached, and whether its
//! counters moved as the workload drove them (equal to the kernel's own
//! count where the VM is quiet enough to compare).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// Hooks a supported kernel may lack, and why that is not a failure: the
/// program is left out, `/samplers` says so and its series are not
/// exported; everything else of the sampler works.
const MAY_BE_ABSENT: &[(&str, &str)] = &[
    (
        "sock_send_length",
        "tcp_bytes_total and tcp_size_bytes (calls = true) not exported",
    ),
    (
        "sock_recv_length",
        "tcp_bytes_total and tcp_size_bytes (calls = true) not exported",
    ),
];

const MODES: [&str; 2] = ["auto", "raw_tp"];

/// One kernel's results.
pub struct Run {
    pub label: String,
    /// Nothing but the matrix runs (a VM): counters must equal the
    /// kernel's own, not only reach the driven count.
    pub quiet: bool,
    pub emulated: bool,
    pub dir: PathBuf,
}

pub struct Matrix {
    pub text: String,
    /// The kernel x sampler table alone (what docs/kernels.md shows).
    pub table: String,
    pub failures: usize,
}

struct Check {
    sampler: &'static str,
    what: String,
    ok: bool,
    detail: String,
}

/// One sampler as `/samplers` reported it in one mode.
struct Sampler {
    name: String,
    status: String,
    reason: Option<String>,
    programs: Vec<(String, String, bool, Option<String>)>,
}

/// What one mode of one kernel produced.
struct ModeResult {
    samplers: Vec<Sampler>,
    checks: Vec<Check>,
    error: Option<String>,
}

pub fn matrix(runs: &[Run]) -> Result<Matrix> {
    let mut results = Vec::new();
    for run in runs {
        let release = read(&run.dir.join("release")).unwrap_or_default();
        let modes: Vec<ModeResult> = MODES.iter().map(|m| mode(run, m)).collect();
        results.push((run, release.trim().to_string(), modes));
    }

    let mut text = String::new();
    let mut failures = 0;
    let _ = writeln!(text, "## Kernel matrix\n");
    let table_start = text.len();
    let _ = write!(text, "| sampler |");
    for (run, release, _) in &results {
        let how = if run.label == "host" {
            "host, native".to_string()
        } else if run.emulated {
            "QEMU TCG".to_string()
        } else {
            "QEMU KVM".to_string()
        };
        let _ = write!(text, " {release} ({how}) |");
    }
    let _ = write!(text, "\n|---|");
    for _ in &results {
        let _ = write!(text, "---|");
    }
    text.push('\n');
    let mut names: Vec<String> = results
        .iter()
        .flat_map(|(_, _, modes)| modes.iter().flat_map(|m| m.samplers.iter()))
        .map(|s| s.name.clone())
        .collect();
    names.sort();
    names.dedup();
    let mut notes = Vec::new();
    for name in &names {
        let _ = write!(text, "| {name} |");
        for (_, release, modes) in &results {
            let mut cell = Vec::new();
            for (m, r) in MODES.iter().zip(modes) {
                let (summary, bad, cell_notes) = cell_of(name, m, r);
                failures += bad;
                for n in cell_notes {
                    notes.push(format!("{name} on {release}: {n}"));
                }
                cell.push(summary);
            }
            cell.dedup();
            let _ = write!(text, " {} |", cell.join(" · "));
        }
        text.push('\n');
    }
    let table = text[table_start..].to_string();
    let _ = writeln!(
        text,
        "\nEach cell: the attach type of the programs with hooks `auto`, then with \
         `raw_tp` forced; programs attached/total; ✓ when every check below passed, \
         ✗ when one failed. procfs samplers read files and load no program."
    );
    if !notes.is_empty() {
        let _ = writeln!(
            text,
            "\nDegraded by design (the rest of the sampler works; /samplers says why):\n"
        );
        notes.sort();
        notes.dedup();
        for n in notes {
            let _ = writeln!(text, "- {n}");
        }
    }
    let _ = writeln!(
        text,
        "\n### Checks (counter deltas over the driven workload)\n"
    );
    for (run, release, modes) in &results {
        let _ = writeln!(
            text,
            "**{release}**{}\n",
            if run.quiet {
                " (quiet VM: kernel counts must be equal)"
            } else {
                " (shared machine: at least the driven count)"
            }
        );
        let _ = writeln!(
            text,
            "| sampler | check | auto | raw_tp |\n|---|---|---|---|"
        );
        for (m, r) in MODES.iter().zip(modes) {
            if let Some(e) = &r.error {
                failures += 1;
                let _ = writeln!(text, "| (agent) | {m} run | ✗ {e} | |");
            }
        }
        let first = &modes[0].checks;
        for (i, c) in first.iter().enumerate() {
            let other = modes[1].checks.get(i);
            let _ = writeln!(
                text,
                "| {} | {} | {} {} | {} |",
                c.sampler,
                c.what,
                if c.ok { "✓" } else { "✗" },
                c.detail,
                other
                    .map(|o| format!("{} {}", if o.ok { "✓" } else { "✗" }, o.detail))
                    .unwrap_or_default()
            );
        }
        failures += modes
            .iter()
            .flat_map(|m| m.checks.iter())
            .filter(|c| !c.ok)
            .count();
        text.push('\n');
    }
    Ok(Matrix {
        text,
        table,
        failures,
    })
}

/// The matrix cell of sampler `name` in one mode: summary, failures, notes.
fn cell_of(name: &str, mode: &str, r: &ModeResult) -> (String, usize, Vec<String>) {
    let Some(s) = r.samplers.iter().find(|s| s.name == name) else {
        return ("✗ not reported".into(), 1, Vec::new());
    };
    if s.status != "active" {
        let why = s.reason.clone().unwrap_or_default();
        return (format!("✗ {} ({why})", s.status), 1, Vec::new());
    }
    let checks_ok = r.checks.iter().filter(|c| c.sampler == name).all(|c| c.ok);
    if s.programs.is_empty() {
        return (
            format!("procfs {}", if checks_ok { "✓" } else { "✗" }),
            0,
            Vec::new(),
        );
    }
    let mut kinds: Vec<&str> = s
        .programs
        .iter()
        .filter(|p| p.2)
        .map(|p| p.1.split('/').next().unwrap_or(""))
        .filter(|k| *k != "iter")
        .collect();
    kinds.sort();
    kinds.dedup();
    let attached = s.programs.iter().filter(|p| p.2).count();
    let mut bad = 0;
    let mut notes = Vec::new();
    for (prog, _, ok, reason) in &s.programs {
        if *ok {
            continue;
        }
        let reason = reason.clone().unwrap_or_default();
        match MAY_BE_ABSENT.iter().find(|(h, _)| h == prog) {
            Some((_, lost)) if reason.contains("is not in this kernel") => {
                notes.push(format!("tracepoint {prog} absent: {lost}"));
            }
            _ => bad += 1,
        }
    }
    // With `auto` on a kernel with BTF every program should load as
    // tp_btf; a fallback works but is worth seeing.
    let fallback = mode == "auto" && kinds.contains(&"raw_tp");
    if fallback {
        notes.push("auto fell back to raw_tp".into());
    }
    let mark = if checks_ok && bad == 0 { "✓" } else { "✗" };
    (
        format!(
            "{} {attached}/{} {mark}",
            if kinds.is_empty() {
                "iter".to_string()
            } else {
                kinds.join("+")
            },
            s.programs.len()
        ),
        bad,
        notes,
    )
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn mode(run: &Run, mode: &str) -> ModeResult {
    let dir = run.dir.join(mode);
    let mut r = ModeResult {
        samplers: Vec::new(),
        checks: Vec::new(),
        error: None,
    };
    if let Ok(e) = read(&dir.join("error")) {
        let log = read(&dir.join("agent.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        r.error = Some(format!("{} ({})", e.trim(), tail.join(" / ")));
        return r;
    }
    // The agent must have shut down cleanly on SIGTERM after the run.
    if let Ok(code) = read(&dir.join("exit")) {
        if code.trim() != "0" {
            r.error = Some(format!("the agent exited with {} on SIGTERM", code.trim()));
            return r;
        }
    }
    match samplers(&dir) {
        Ok(s) => r.samplers = s,
        Err(e) => {
            r.error = Some(format!("{e:#}"));
            return r;
        }
    }
    match checks(run, &dir, &r.samplers) {
        Ok(c) => r.checks = c,
        Err(e) => r.error = Some(format!("{e:#}")),
    }
    r
}

fn samplers(dir: &Path) -> Result<Vec<Sampler>> {
    let json: Value = serde_json::from_str(&read(&dir.join("samplers.json"))?)
        .context("samplers.json is not JSON")?;
    let list = json.as_array().context("samplers.json is not a list")?;
    Ok(list
        .iter()
        .map(|s| Sampler {
            name: s["name"].as_str().unwrap_or("?").to_string(),
            status: s["status"].as_str().unwrap_or("?").to_string(),
            reason: s["reason"].as_str().map(str::to_string),
            programs: s["programs"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap_or("?").to_string(),
                                p["hook"].as_str().unwrap_or("?").to_string(),
                                p["attached"].as_bool().unwrap_or(false),
                                p["reason"].as_str().map(str::to_string),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

/// Sum of the samples of `metric` whose labels include every `k="v"`.
fn sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            (name == metric
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Writes completed of `disk` in /proc/diskstats.
fn disk_writes(text: &str, disk: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&disk)).then(|| f.get(7)?.parse().ok())?
    })
}

/// InSegs and OutSegs of /proc/net/snmp.
fn segments(text: &str) -> Option<(u64, u64)> {
    let mut tcp = text.lines().filter_map(|l| l.strip_prefix("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let get = |want: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == want)
            .and_then(|(_, v)| v.parse().ok())
    };
    Some((get("InSegs")?, get("OutSegs")?))
}

/// `got` must reach the driven count `want`.
fn reached(sampler: &'static str, what: &str, got: f64, want: f64) -> Check {
    Check {
        sampler,
        what: what.to_string(),
        ok: got >= want,
        detail: format!("{got:.0} ≥ {want:.0}"),
    }
}

fn checks(run: &Run, dir: &Path, samplers: &[Sampler]) -> Result<Vec<Check>> {
    let before = read(&dir.join("before.prom"))?;
    let after = read(&dir.join("after.prom"))?;
    let workload = read(&dir.join("workload"))?;
    let driven = |what: &str| -> Result<f64> {
        workload
            .lines()
            .find_map(|l| l.strip_prefix(what)?.trim().parse::<f64>().ok())
            .with_context(|| format!("the workload did not finish `{what}`: {workload}"))
    };
    let (n_sys, n_pp, n_blk, n_conn) = (
        driven("syscalls")?,
        driven("pingpong")?,
        driven("direct")?,
        driven("connects")?,
    );
    let delta = |metric: &str, labels: &[(&str, &str)]| {
        sum(&after, metric, labels) - sum(&before, metric, labels)
    };
    let attached = |sampler: &str, hook: &str| {
        samplers
            .iter()
            .any(|s| s.name == sampler && s.programs.iter().any(|p| p.0 == hook && p.2))
    };
    let mut out = Vec::new();
    let mut at_least = |sampler, what: &str, got, want| out.push(reached(sampler, what, got, want));
    at_least(
        "syscall",
        "syscalls ≥ driven",
        delta("syscalls_total", &[]),
        n_sys,
    );
    at_least(
        "syscall",
        "timed syscalls ≥ driven",
        delta("syscall_latency_seconds_count", &[]),
        n_sys,
    );
    at_least(
        "scheduler",
        "context switches ≥ 2 × round trips",
        delta("scheduler_context_switches_total", &[]),
        2.0 * n_pp,
    );
    at_least(
        "scheduler",
        "on-CPU slices ≥ 2 × round trips",
        delta("scheduler_running_seconds_count", &[]),
        2.0 * n_pp,
    );
    at_least(
        "scheduler",
        "off-CPU periods ≥ 2 × round trips − 2",
        delta("scheduler_offcpu_seconds_count", &[]),
        2.0 * n_pp - 2.0,
    );
    // In-kernel cgroup attribution (the VM is cgroup v2, the host v1
    // hybrid): the workload's cgroup gets its syscalls and switches.
    at_least(
        "cgroup",
        "cgroup syscalls ≥ driven",
        delta("cgroup_syscalls_total", &[]),
        n_sys,
    );
    // cgroupfs read in the layout of the kernel: cpu.stat (v2 VM) or
    // cpuacct.usage (v1 hybrid host), in ms.
    at_least(
        "cgroup",
        "CPU of the root cgroup (ms) > 0",
        1000.0 * delta("container_cpu_usage_seconds_total", &[("id", "/")]),
        1.0,
    );
    at_least(
        "cgroup",
        "cgroup context switches ≥ 2 × round trips",
        delta("cgroup_context_switches_total", &[]),
        2.0 * n_pp,
    );
    at_least(
        "scheduler",
        "run-queue waits > 0",
        delta("scheduler_runqueue_latency_seconds_count", &[]),
        1.0,
    );
    at_least(
        "blockio",
        "write latencies ≥ driven",
        delta("blockio_latency_seconds_count", &[("op", "write")]),
        n_blk,
    );
    at_least(
        "blockio",
        "bytes written ≥ 4 KiB × driven",
        delta("blockio_bytes_total", &[("op", "write")]),
        4096.0 * n_blk,
    );
    at_least(
        "tcp",
        "connect latencies ≥ driven",
        delta("tcp_connect_latency_seconds_count", &[]),
        n_conn,
    );
    if attached("tcp", "sock_send_length") {
        at_least(
            "tcp",
            "bytes sent ≥ 100 × connects",
            delta("tcp_bytes_total", &[("direction", "transmit")]),
            100.0 * n_conn,
        );
    }
    at_least(
        "network",
        "packets received ≥ 3 × connects",
        delta("network_packets_total", &[("direction", "receive")]),
        3.0 * n_conn,
    );
    at_least(
        "softirq",
        "softirqs handled > 0",
        delta("softirq_total", &[]),
        1.0,
    );
    at_least(
        "softirq",
        "softirq time (ns) > 0",
        delta("softirq_seconds_total", &[]) * 1e9,
        1.0,
    );

    // Equal to the kernel's own count where nothing else runs.
    let disk = read(&run.dir.join("disk"))?.trim().to_string();
    let writes = |f: &str| -> Result<f64> {
        let text = read(&dir.join(format!("{f}.diskstats")))?;
        disk_writes(&text, &disk)
            .map(|v| v as f64)
            .with_context(|| format!("{disk} is not in /proc/diskstats"))
    };
    let kernel_writes = writes("after")? - writes("before")?;
    let ops = delta("blockio_operations_total", &[("op", "write")]);
    let segs = |f: &str| -> Result<(f64, f64)> {
        let text = read(&dir.join(format!("{f}.snmp")))?;
        let (i, o) = segments(&text).context("no Tcp: lines in /proc/net/snmp")?;
        Ok((i as f64, o as f64))
    };
    let (b, a) = (segs("before")?, segs("after")?);
    let (kernel_in, kernel_out) = (a.0 - b.0, a.1 - b.1);
    let agent_in = delta("tcp_packets_total", &[("direction", "receive")]);
    let agent_out = delta("tcp_packets_total", &[("direction", "transmit")]);
    if run.quiet {
        let mut equal = |sampler: &'static str, what: &str, got: f64, kernel: f64, floor: f64| {
            out.push(Check {
                sampler,
                what: what.to_string(),
                ok: got == kernel && got >= floor,
                detail: format!("{got:.0} = {kernel:.0} (kernel), ≥ {floor:.0}"),
            });
        };
        equal(
            "blockio",
            "write ops = /proc/diskstats",
            ops,
            kernel_writes,
            n_blk,
        );
        equal(
            "tcp",
            "segments in = /proc/net/snmp InSegs",
            agent_in,
            kernel_in,
            3.0 * n_conn,
        );
        equal(
            "tcp",
            "segments out = /proc/net/snmp OutSegs",
            agent_out,
            kernel_out,
            3.0 * n_conn,
        );
    } else {
        let mut at_least =
            |sampler, what: &str, got, want| out.push(reached(sampler, what, got, want));
        at_least("blockio", "write ops ≥ driven", ops, n_blk);
        at_least("tcp", "segments in ≥ 3 × connects", agent_in, 3.0 * n_conn);
        at_least(
            "tcp",
            "segments out ≥ 3 × connects",
            agent_out,
            3.0 * n_conn,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_series_by_label() {
        let text =
            "# HELP x y\nm_total{op=\"write\"} 5\nm_total{op=\"read\"} 2\nm_total_x 9\nn 1\n";
        assert_eq!(sum(text, "m_total", &[]), 7.0);
        assert_eq!(sum(text, "m_total", &[("op", "write")]), 5.0);
        assert_eq!(sum(text, "n", &[]), 1.0);
    }

    #[test]
    fn kernel_files() {
        let d = " 254       0 vda 1 0 8 3 500 0 4000 108 0 112 111 0 0 0 0 0 0\n";
        assert_eq!(disk_writes(d, "vda"), Some(500));
        assert_eq!(disk_writes(d, "vdb"), None);
        let snmp = "Tcp: RtoAlgorithm InSegs OutSegs\nTcp: 1 10 12\n";
        assert_eq!(segments(snmp), Some((10, 12)));
    }
}
