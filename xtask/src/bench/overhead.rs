//! Per-event overhead: every workload with the agent off and on,
//! alternating; each eBPF sampler alone on nginx; and which programs ran
//! how often and how long per workload operation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::proc::{get_once, unpin, Proc};
use super::workloads::{Kind, Sample, Servers, NGINX, WORKLOADS};
use super::{sonde_bin, Plan};

/// Medians of one workload, agent off and on, and of the per-pair change.
pub struct Compared {
    pub off: f64,
    pub on: f64,
    /// Median over alternating pairs of (on - off) / off, in percent:
    /// pairs taken a few seconds apart cancel most of the machine's drift.
    pub change_pct: f64,
    /// The middle half of the per-pair changes (25th, 75th percentile):
    /// how much the machine moved under the measurement.
    pub spread: (f64, f64),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn compare(pairs: &[(f64, f64)]) -> Compared {
    let mut changes: Vec<f64> = pairs.iter().map(|p| 100.0 * (p.1 - p.0) / p.0).collect();
    changes.sort_by(f64::total_cmp);
    let at = |q: f64| changes[((changes.len() - 1) as f64 * q).round() as usize];
    Compared {
        off: median(pairs.iter().map(|p| p.0).collect()),
        on: median(pairs.iter().map(|p| p.1).collect()),
        change_pct: median(changes.clone()),
        spread: (at(0.25), at(0.75)),
    }
}

/// Starts the agent on `config`, waits until it serves, and a little more
/// so its start-up work is not measured.
fn agent(config: &Path) -> Result<(Proc, u16)> {
    let mut a = Proc::spawn(&sonde_bin(), &[config.to_str().unwrap()])?;
    let port = a.wait_port(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(300));
    Ok((a, port))
}

/// Every workload, `plan.runs` pairs each: a run with the agent off, then
/// one with it on, back to back (this machine's speed drifts by ±10 %
/// from one second to the next; a tight pair shares most of it).
pub fn all_workloads(plan: &Plan, servers: &Servers, config: &Path) -> Result<Vec<Compared>> {
    let mut out = Vec::new();
    for (i, w) in WORKLOADS.iter().enumerate() {
        eprintln!("xtask: bench: {} ({} pairs)", w.name, plan.runs);
        let mut pairs = Vec::new();
        for _ in 0..plan.runs {
            let off = servers.run(plan, i)?.value;
            let a = agent(config)?;
            let on = servers.run(plan, i)?.value;
            drop(a);
            pairs.push((off, on));
        }
        out.push(compare(&pairs));
    }
    unpin();
    Ok(out)
}

/// An agent configuration of the per-sampler table.
pub struct Variant {
    pub name: &'static str,
    /// Samplers left enabled (`None`: config/agent.toml as it is).
    pub samplers: Option<&'static [&'static str]>,
    /// (sampler, key, value) lines set in its section.
    pub set: &'static [(&'static str, &'static str, &'static str)],
}

pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "scheduler (default)",
        samplers: Some(&["scheduler"]),
        set: &[],
    },
    Variant {
        name: "scheduler, `offcpu = true`",
        samplers: Some(&["scheduler"]),
        set: &[("scheduler", "offcpu", "true")],
    },
    Variant {
        name: "syscall, `latency = \"off\"` (default)",
        samplers: Some(&["syscall"]),
        set: &[],
    },
    Variant {
        name: "syscall, `latency = \"sampled\"` (1 in 64)",
        samplers: Some(&["syscall"]),
        set: &[("syscall", "latency", "\"sampled\"")],
    },
    Variant {
        name: "syscall, `latency = \"all\"`",
        samplers: Some(&["syscall"]),
        set: &[("syscall", "latency", "\"all\"")],
    },
    Variant {
        name: "tcp (default)",
        samplers: Some(&["tcp"]),
        set: &[],
    },
    Variant {
        name: "tcp, `calls = true`",
        samplers: Some(&["tcp"]),
        set: &[("tcp", "calls", "true")],
    },
    Variant {
        name: "softirq (default: counts from /proc)",
        samplers: Some(&["softirq"]),
        set: &[],
    },
    Variant {
        name: "softirq, `time = true`",
        samplers: Some(&["softirq"]),
        set: &[("softirq", "time", "true")],
    },
    Variant {
        name: "network",
        samplers: Some(&["network"]),
        set: &[],
    },
    Variant {
        name: "blockio",
        samplers: Some(&["blockio"]),
        set: &[],
    },
    Variant {
        name: "cpu_events (default)",
        samplers: Some(&["cpu_events"]),
        set: &[],
    },
    Variant {
        name: "cpu_events, `tlb = true`",
        samplers: Some(&["cpu_events"]),
        set: &[("cpu_events", "tlb", "true")],
    },
    Variant {
        name: "scheduler + syscall (no cgroup attribution)",
        samplers: Some(&["scheduler", "syscall"]),
        set: &[],
    },
    Variant {
        name: "scheduler + syscall + cgroup, `attribution = true` (default)",
        samplers: Some(&["scheduler", "syscall", "cgroup"]),
        set: &[],
    },
    Variant {
        name: "cgroup, `attribution = false` (cgroupfs only)",
        samplers: Some(&["cgroup"]),
        set: &[("cgroup", "attribution", "false")],
    },
    Variant {
        name: "all samplers (config/agent.toml)",
        samplers: None,
        set: &[],
    },
];

/// config/agent.toml (as prepared in `base`) with only `v.samplers`
/// enabled and `v.set` applied.
pub fn variant_config(base: &Path, dir: &Path, index: usize, v: &Variant) -> Result<PathBuf> {
    let text = std::fs::read_to_string(base)?;
    let mut out = String::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        }
        let sampler = section.strip_prefix("samplers.").unwrap_or("");
        let key = line.split('=').next().unwrap_or("").trim();
        if let Some(&(_, _, value)) = v.set.iter().find(|(s, k, _)| *s == sampler && *k == key) {
            out.push_str(&format!("{key} = {value}\n"));
            continue;
        }
        match v.samplers {
            Some(_) if key == "enabled" && section == "defaults" => {
                out.push_str("enabled = false\n");
            }
            Some(keep) if key == "enabled" && !sampler.is_empty() && !keep.contains(&sampler) => {
                out.push_str("enabled = false\n");
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    // Keys config/agent.toml leaves at their default.
    for (s, k, value) in v.set {
        let header = format!("[samplers.{s}]\n");
        if !out.contains(&format!("\n{k} = {value}\n")) {
            if let Some(at) = out.find(&header) {
                out.insert_str(at + header.len(), &format!("{k} = {value}\n"));
            }
        }
    }
    let path = dir.join(format!("variant-{index}.toml"));
    std::fs::write(&path, out)?;
    Ok(path)
}

/// Per variant: nginx throughput, getppid and ping-pong time with that
/// variant on, against the agent off, in tight pairs.
pub struct Breakdown {
    pub nginx: Vec<Compared>,
    pub getppid: Vec<Compared>,
    pub pingpong: Vec<Compared>,
}

pub fn per_sampler(plan: &Plan, servers: &Servers, base: &Path, dir: &Path) -> Result<Breakdown> {
    let configs: Vec<PathBuf> = VARIANTS
        .iter()
        .enumerate()
        .map(|(i, v)| variant_config(base, dir, i, v))
        .collect::<Result<_>>()?;
    let mut nginx: Vec<Vec<(f64, f64)>> = vec![Vec::new(); VARIANTS.len()];
    let mut getppid: Vec<Vec<(f64, f64)>> = vec![Vec::new(); VARIANTS.len()];
    let mut pingpong: Vec<Vec<(f64, f64)>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..plan.breakdown_runs {
        eprintln!(
            "xtask: bench: per-sampler breakdown, round {}/{}",
            round + 1,
            plan.breakdown_runs
        );
        for (i, config) in configs.iter().enumerate() {
            let run = || -> Result<[f64; 3]> {
                Ok([
                    servers.run(plan, NGINX)?.value,
                    servers.run(plan, 0)?.value,
                    servers.run(plan, 1)?.value,
                ])
            };
            let off = run()?;
            let a = agent(config)?;
            let on = run()?;
            drop(a);
            nginx[i].push((off[0], on[0]));
            getppid[i].push((off[1], on[1]));
            pingpong[i].push((off[2], on[2]));
        }
    }
    unpin();
    Ok(Breakdown {
        nginx: nginx.iter().map(|p| compare(p)).collect(),
        getppid: getppid.iter().map(|p| compare(p)).collect(),
        pingpong: pingpong.iter().map(|p| compare(p)).collect(),
    })
}

/// One program's work during one workload.
pub struct ProgramRow {
    pub workload: usize,
    pub sampler: String,
    pub program: String,
    pub runs: f64,
    pub ns: f64,
    pub ops: u64,
}

/// With kernel.bpf_stats_enabled=1, each workload once with the agent on:
/// the agent's own `sonde_bpf_program_runs_total` and
/// `_run_seconds_total` before and after. (The statistics cost two clock
/// reads per run, so this run is not one of the timed ones.)
pub fn per_program(plan: &Plan, servers: &Servers, config: &Path) -> Result<Vec<ProgramRow>> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let was = std::fs::read_to_string(SYSCTL).context("cannot read kernel.bpf_stats_enabled")?;
    std::fs::write(SYSCTL, "1").context("cannot enable kernel.bpf_stats_enabled")?;
    let result = (|| {
        let (a, port) = agent(config)?;
        let mut rows = Vec::new();
        for (i, _) in WORKLOADS.iter().enumerate() {
            let before = program_stats(port)?;
            let Sample { ops, .. } = servers.run(plan, i)?;
            let after = program_stats(port)?;
            for (key, (runs, secs)) in after {
                let (r0, s0) = before.get(&key).copied().unwrap_or((0.0, 0.0));
                if runs - r0 >= 1.0 {
                    rows.push(ProgramRow {
                        workload: i,
                        sampler: key.0,
                        program: key.1,
                        runs: runs - r0,
                        ns: (secs - s0) * 1e9,
                        ops,
                    });
                }
            }
        }
        drop(a);
        Ok(rows)
    })();
    let _ = std::fs::write(SYSCTL, was.trim());
    unpin();
    result
}

type Stats = std::collections::BTreeMap<(String, String), (f64, f64)>;

/// (sampler, program) → (runs, run seconds), from a fresh scrape.
fn program_stats(port: u16) -> Result<Stats> {
    // Past the agent's 100 ms TTL, so the scrape refreshes.
    std::thread::sleep(Duration::from_millis(150));
    let text = String::from_utf8(get_once(port, "/metrics", false)?.body)?;
    let mut out = Stats::new();
    for line in text.lines() {
        let (metric, slot) = if let Some(r) = line.strip_prefix("sonde_bpf_program_runs_total{") {
            (r, 0)
        } else if let Some(r) = line.strip_prefix("sonde_bpf_program_run_seconds_total{") {
            (r, 1)
        } else {
            continue;
        };
        let Some((labels, value)) = metric.split_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let e = out
            .entry((label("sampler"), label("program")))
            .or_insert((0.0, 0.0));
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        if slot == 0 {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    Ok(out)
}

/// Whether `value` of workload `i` (a rate or a time) got worse by more
/// than the change says; used to phrase the report.
pub fn worse(i: usize, c: &Compared) -> f64 {
    match WORKLOADS[i].kind {
        Kind::Rate => -c.change_pct,
        Kind::Time => c.change_pct,
    }
}
