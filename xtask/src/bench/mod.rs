//! `cargo xtask bench`: Sonde's cost on this machine, every figure measured
//! in this one run: scrape cost side by side with node_exporter, per-event
//! overhead on loops and real workloads (nginx + wrk, redis-benchmark, fio)
//! with the agent off and on, which BPF programs ran how often, each eBPF
//! sampler alone, the floor of an empty program, and micro-benchmarks.

mod analysis;
mod containers;
mod fanin;
mod fleet;
mod overhead;
mod proc;
mod recorder;
mod report;
mod scrape;
mod transport;
mod viewer;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, ensure_packages, is_root, root, status, BUILD_PACKAGES};
use proc::{get_once, wait_http, Proc};
use report::Report;
use workloads::{CLIENT_CPU, WORKLOAD_CPU};

/// Debian packages of the workloads, of node_exporter, and Prometheus (the
/// pushers' fan-in receiver).
const BENCH_PACKAGES: &[&str] = &[
    "prometheus-node-exporter",
    "prometheus",
    "bpftool",
    "nginx-light",
    "wrk",
    "redis-server",
    "redis-tools",
    "fio",
    "curl",
    "openssl",
    "apache2-utils",
];

/// How long each phase runs.
pub struct Plan {
    scrape_secs: u64,
    /// Alternating off/on rounds of every workload.
    runs: usize,
    /// Rounds of the per-sampler breakdown.
    breakdown_runs: usize,
    getppid: u64,
    rounds: usize,
    /// O_DIRECT writes per run: about as long as fio's `secs`. Runs of
    /// 1,500 writes (80 ms, 300 ms after the agent started) gave -12 to
    /// -21 % where 2 s runs give -3.5 %: a short run measures this disk's
    /// jitter, or a moment after start, not the agent's steady cost.
    writes: usize,
    connects: usize,
    /// Seconds of wrk and of fio per run.
    secs: u64,
    /// redis-benchmark requests per test (GET and SET).
    redis_requests: u64,
    divan_max_time: &'static str,
}

const FULL: Plan = Plan {
    scrape_secs: 60,
    runs: 15,
    breakdown_runs: 5,
    getppid: 2_000_000,
    rounds: 20_000,
    writes: 60_000,
    connects: 2_000,
    secs: 4,
    redis_requests: 100_000,
    divan_max_time: "2",
};

const QUICK: Plan = Plan {
    scrape_secs: 15,
    runs: 5,
    breakdown_runs: 2,
    getppid: 1_000_000,
    rounds: 10_000,
    writes: 30_000,
    connects: 1_000,
    secs: 2,
    redis_requests: 50_000,
    divan_max_time: "0.3",
};

pub fn bench(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    // `--only recorder`: startup and the recorder phase, for a quick look.
    let only_recorder = args
        .windows(2)
        .any(|w| w[0] == "--only" && w[1] == "recorder");
    let mut rest = args.iter().filter(|a| *a != "--quick");
    while let Some(a) = rest.next() {
        if a == "--only" && rest.next().is_some_and(|w| w == "recorder") {
            continue;
        }
        bail!("unknown argument `{a}` (bench takes --quick and --only recorder)");
    }
    let plan = if quick { &QUICK } else { &FULL };
    if !is_root() {
        bail!("the benchmark loads eBPF programs: run it as root (sudo -E cargo xtask bench)");
    }
    let mut packages = BUILD_PACKAGES.to_vec();
    packages.extend(BENCH_PACKAGES);
    ensure_packages(&packages)?;
    status(cargo().args(["build", "--release", "--bin", "sonde"]))?;

    let mut report = Report::default();
    report.line(&format!(
        "# Sonde benchmark{}\n",
        if quick { " (--quick)" } else { "" }
    ));
    report.line(&machine());
    let foreign = foreign_bpf_programs();
    if foreign > 0 {
        let w = format!(
            "**Warning:** {foreign} BPF programs of other tools are loaded; they add their own cost to every figure.\n"
        );
        eprintln!("xtask: {w}");
        report.line(&w);
    }

    // On the disk (O_DIRECT and fio need one; /tmp may be tmpfs).
    let dir = PathBuf::from(format!("/var/tmp/sonde-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = phases(plan, &dir, &mut report, only_recorder);
    let _ = std::fs::remove_dir_all(&dir);
    result?;

    let path = crate::target_dir().join("bench/report.md");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, &report.text)?;
    println!("{}", report.text);
    eprintln!("xtask: bench: report written to {}", path.display());
    // The docs carry a whole run's tables, not a quick or partial one's.
    if quick || only_recorder {
        eprintln!("xtask: bench: docs/performance.md is left as it is (full runs write it)");
    } else {
        let tables = report.text.split_once('\n').map_or("", |(_, rest)| rest);
        crate::write_region("docs/performance.md", "bench", tables)?;
    }
    Ok(())
}

fn phases(plan: &Plan, dir: &Path, report: &mut Report, only_recorder: bool) -> Result<()> {
    let agent_cfg = agent_config(dir, "100ms")?;

    // Startup: exec to the first successful scrape.
    eprintln!("xtask: bench: agent startup");
    let t0 = Instant::now();
    let mut agent = Proc::spawn(&sonde_bin(), &[agent_cfg.to_str().unwrap()])?;
    let port = agent.wait_port(Duration::from_secs(30))?;
    loop {
        if get_once(port, "/metrics", false).is_ok_and(|r| r.status == 200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let startup = t0.elapsed();
    let startup_cpu = agent.cpu();
    let map_bytes = scrape::map_bytes(port)?;

    eprintln!(
        "xtask: bench: sonde record at 1 s for {} s",
        plan.scrape_secs
    );
    let rec = recorder::measure(port, dir, plan.scrape_secs)?;
    report.recorder_table(&rec);
    eprintln!("xtask: bench: the query engine on a 24 h recording");
    let mut a = analysis::measure(port)?;
    eprintln!("xtask: bench: sonde view on the 24 h recording");
    a.rows.extend(viewer::measure(
        &crate::target_dir().join("bench/day.parquet"),
    )?);
    report.analysis_table(&a);
    if only_recorder {
        return Ok(());
    }

    // Scrape cost: both pulled at 1 Hz for the same window.
    eprintln!("xtask: bench: scraping at 1 Hz for {} s", plan.scrape_secs);
    let ne_port = proc::free_port()?;
    let ne = Proc::spawn(
        Path::new("/usr/bin/prometheus-node-exporter"),
        &[&format!("--web.listen-address=127.0.0.1:{ne_port}")],
    )?;
    wait_http(ne_port, Duration::from_secs(20))?;
    let scrape = scrape::scrape_phase(plan, port, ne_port, &agent, &ne)?;
    drop(ne);
    eprintln!("xtask: bench: text and protobuf expositions");
    let (text, native) = scrape::expositions(port, &agent)?;
    eprintln!(
        "xtask: bench: the exporter relaying {} sources",
        fleet::SOURCES
    );
    let fleet = fleet::measure(port, dir)?;
    eprintln!(
        "xtask: bench: {} pushers into one Prometheus",
        fanin::PUSHERS
    );
    let fanin = fanin::measure(port, dir)?;
    drop(agent);
    report.scrape_table(&scrape, startup, startup_cpu, map_bytes);
    report.exposition_table(&text, &native);
    report.fleet_table(&fleet);
    report.fanin_table(&fanin);

    eprintln!("xtask: bench: the cost of TLS and auth per scrape");
    let transport = transport::measure(dir)?;
    report.transport_table(&transport);

    eprintln!(
        "xtask: bench: cgroup and processes passes ({} cgroups, {} processes)",
        containers::CGROUPS,
        containers::PROCESSES
    );
    let c = containers::measure(dir, &agent_cfg)?;
    report.containers_table(&c);

    let servers = workloads::Servers::start(dir)?;
    eprintln!(
        "xtask: bench: per-event overhead, {} alternating rounds",
        plan.runs
    );
    let compared = overhead::all_workloads(plan, &servers, &agent_cfg)?;
    report.workload_table(plan.runs, &compared);

    eprintln!("xtask: bench: BPF program statistics per workload");
    let programs = overhead::per_program(plan, &servers, &agent_cfg)?;
    report.program_table(&programs);

    let breakdown = overhead::per_sampler(plan, &servers, &agent_cfg, dir)?;
    report.breakdown_table(plan.breakdown_runs, &breakdown);
    drop(servers);

    eprintln!("xtask: bench: the floor (cargo bench --bench floor)");
    report.line("\n## The floor: an empty program on a hot hook (`cargo bench --bench floor`)\n");
    report.line(&cargo_bench(&["--bench", "floor"])?);

    eprintln!("xtask: bench: micro-benchmarks (divan)");
    report.line("\n## Micro-benchmarks (`cargo bench --bench hot_paths`)\n\n```");
    report.line(&cargo_bench(&[
        "--bench",
        "hot_paths",
        "--",
        "--max-time",
        plan.divan_max_time,
    ])?);
    report.line("```\n");
    Ok(())
}

/// `cargo bench ARGS`, its stdout.
fn cargo_bench(args: &[&str]) -> Result<String> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .arg("bench")
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench {} failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

fn sonde_bin() -> PathBuf {
    crate::target_dir().join("release/sonde")
}

fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    format!(
        "Machine: {cores} cores ({model}), {:.1} GiB, Linux {kernel}. Loops and servers pinned to CPU {WORKLOAD_CPU}, load generators to CPU {CLIENT_CPU}.\n",
        mem_kib as f64 / (1 << 20) as f64
    )
}

fn foreign_bpf_programs() -> usize {
    Command::new("bpftool")
        .args(["prog", "list", "--json"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.matches("\"id\":").count())
        .unwrap_or(0)
}

/// config/agent.toml on an ephemeral port with the given TTL.
fn agent_config(dir: &Path, ttl: &str) -> Result<PathBuf> {
    let text = std::fs::read_to_string(root().join("config/agent.toml"))?
        .replace("address = \"127.0.0.1:4251\"", "address = \"127.0.0.1:0\"")
        .replace("ttl = \"100ms\"", &format!("ttl = \"{ttl}\""));
    let path = dir.join("agent.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}
