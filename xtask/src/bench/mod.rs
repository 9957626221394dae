//! `cargo xtask bench`: Sonde's cost on this machine, side by side with
//! node_exporter, every figure measured in this one run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, ensure_packages, is_root, root, status, BUILD_PACKAGES};

/// How long each phase runs.
struct Plan {
    scrape_secs: u64,
    runs: usize,
    getppid: u64,
    rounds: usize,
    writes: usize,
    connects: usize,
    divan_max_time: &'static str,
}

const FULL: Plan = Plan {
    scrape_secs: 60,
    runs: 5,
    getppid: 2_000_000,
    rounds: 20_000,
    writes: 3_000,
    connects: 2_000,
    divan_max_time: "2",
};

const QUICK: Plan = Plan {
    scrape_secs: 15,
    runs: 3,
    getppid: 1_000_000,
    rounds: 10_000,
    writes: 1_500,
    connects: 1_000,
    divan_max_time: "0.3",
};

/// The CPU the workloads are pinned to; the agent may use the others.
const WORKLOAD_CPU: usize = 1;

pub fn bench(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(a) = args.iter().find(|a| *a != "--quick") {
        bail!("unknown argument `{a}` (bench takes only --quick)");
    }
    let plan = if quick { &QUICK } else { &FULL };
    if !is_root() {
        bail!("the benchmark loads eBPF programs: run it as root (sudo -E cargo xtask bench)");
    }
    let mut packages = BUILD_PACKAGES.to_vec();
    packages.extend(["prometheus-node-exporter", "bpftool"]);
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

    let dir = tempdir()?;
    let agent_cfg = agent_config(&dir, "100ms")?;

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
    let map_bytes = map_bytes(port)?;

    // Scrape cost: both pulled at 1 Hz for the same window.
    eprintln!("xtask: bench: scraping at 1 Hz for {} s", plan.scrape_secs);
    let ne_port = free_port()?;
    let ne = Proc::spawn(
        Path::new("/usr/bin/prometheus-node-exporter"),
        &[&format!("--web.listen-address=127.0.0.1:{ne_port}")],
    )?;
    wait_http(ne_port, Duration::from_secs(20))?;
    let scrape = scrape_phase(plan, port, ne_port, &agent, &ne)?;
    drop(ne);
    drop(agent);

    // Per-event overhead: agent off vs on, alternating.
    eprintln!(
        "xtask: bench: per-event overhead, {} runs each way",
        plan.runs
    );
    let overhead = overhead_phase(plan, &agent_cfg)?;

    report.table(&scrape, startup, startup_cpu, map_bytes, &overhead);

    eprintln!("xtask: bench: micro-benchmarks (divan)");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root())
        .args([
            "bench",
            "--bench",
            "hot_paths",
            "--",
            "--max-time",
            plan.divan_max_time,
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench failed");
    }
    report.line("\n## Micro-benchmarks (`cargo bench --bench hot_paths`)\n\n```");
    report.line(String::from_utf8_lossy(&out.stdout).trim_end());
    report.line("```\n");

    let path = root().join("target/bench/report.md");
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(&path, &report.text)?;
    println!("{}", report.text);
    eprintln!("xtask: bench: report written to {}", path.display());
    Ok(())
}

fn sonde_bin() -> PathBuf {
    root().join("target/release/sonde")
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
        "Machine: {cores} cores ({model}), {:.1} GiB, Linux {kernel}. Workloads pinned to CPU {WORKLOAD_CPU}.\n",
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

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sonde-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
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

/// A child process, killed on drop.
struct Proc {
    child: Child,
    stderr: Option<std::io::BufReader<std::process::ChildStderr>>,
}

impl Proc {
    fn spawn(bin: &Path, args: &[&str]) -> Result<Proc> {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().map(std::io::BufReader::new);
        Ok(Proc { child, stderr })
    }

    /// The port from the agent's "listening on http://127.0.0.1:PORT" line.
    fn wait_port(&mut self, timeout: Duration) -> Result<u16> {
        use std::io::BufRead;
        let deadline = Instant::now() + timeout;
        let stderr = self.stderr.as_mut().context("no stderr")?;
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if stderr.read_line(&mut line)? == 0 {
                bail!("the agent exited before listening");
            }
            if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
                let port = rest.split('/').next().unwrap_or("").parse()?;
                // Keep draining its log so it never blocks on a full pipe.
                let mut rest = self.stderr.take().unwrap();
                std::thread::spawn(move || std::io::copy(&mut rest, &mut std::io::sink()));
                return Ok(port);
            }
        }
        bail!("the agent did not listen within {timeout:?}")
    }

    /// CPU time so far, in ns from each thread's schedstat (stat's 10 ms
    /// ticks are too coarse for a scrape that costs a millisecond).
    fn cpu(&self) -> Duration {
        let pid = self.child.id();
        let mut ns = 0u64;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
                ns += stat
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Duration::from_nanos(ns)
    }

    /// (VmRSS, VmHWM) in bytes.
    fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct HttpResponse {
    status: u16,
    body: Vec<u8>,
    gzipped: bool,
}

/// One GET on a fresh connection, for polling and one-off reads.
fn get_once(port: u16, path: &str, gzip: bool) -> Result<HttpResponse> {
    Conn::new(port).get(path, gzip)
}

/// A keep-alive HTTP/1.1 connection, as Prometheus scrapes; reconnects once
/// when the server closed it.
struct Conn {
    port: u16,
    stream: Option<std::io::BufReader<TcpStream>>,
}

impl Conn {
    fn new(port: u16) -> Conn {
        Conn { port, stream: None }
    }

    fn get(&mut self, path: &str, gzip: bool) -> Result<HttpResponse> {
        match self.try_get(path, gzip) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_get(path, gzip)
            }
        }
    }

    fn try_get(&mut self, path: &str, gzip: bool) -> Result<HttpResponse> {
        use std::io::BufRead;
        if self.stream.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_nodelay(true)?;
            self.stream = Some(std::io::BufReader::new(s));
        }
        let r = self.stream.as_mut().unwrap();
        let enc = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        // One write: several small ones meet Nagle and delayed ACKs (40 ms).
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{enc}\r\n");
        r.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status")?;
        let (mut length, mut chunked, mut gzipped) = (None, false, false);
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            chunked |= l == "transfer-encoding: chunked";
            gzipped |= l == "content-encoding: gzip";
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).context("bad chunk size")?;
                let start = body.len();
                body.resize(start + n + 2, 0);
                r.read_exact(&mut body[start..])?;
                body.truncate(start + n); // drop the chunk's CRLF
                if n == 0 {
                    break;
                }
            }
        } else {
            body.resize(length.context("no content-length")?, 0);
            r.read_exact(&mut body)?;
        }
        Ok(HttpResponse {
            status,
            body,
            gzipped,
        })
    }
}

fn wait_http(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if get_once(port, "/metrics", false).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing answered on port {port} within {timeout:?}")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn map_bytes(port: u16) -> Result<u64> {
    let text = String::from_utf8(get_once(port, "/samplers", false)?.body)?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"map_bytes\":"))
        .filter_map(|v| v.trim().trim_end_matches(',').parse::<u64>().ok())
        .sum())
}

/// Latencies of one endpoint over one keep-alive connection, and its
/// body sizes.
struct Endpoint {
    conn: Conn,
    path: &'static str,
    latencies: Vec<Duration>,
    plain: usize,
    gzip: usize,
    gzipped: bool,
}

impl Endpoint {
    fn new(port: u16, path: &'static str) -> Endpoint {
        Endpoint {
            conn: Conn::new(port),
            path,
            latencies: Vec::new(),
            plain: 0,
            gzip: 0,
            gzipped: false,
        }
    }

    fn pull(&mut self) -> Result<()> {
        let path = self.path;
        let t = Instant::now();
        let r = self.conn.get(path, true)?;
        self.latencies.push(t.elapsed());
        if r.status != 200 {
            bail!("{path} answered {}", r.status);
        }
        self.gzip = r.body.len();
        self.gzipped = r.gzipped;
        Ok(())
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

struct Side {
    cpu: Duration,
    scrapes: usize,
    secs: f64,
    rss: u64,
    hwm: u64,
}

struct Scrape {
    sonde: Side,
    node: Side,
    sonde_metrics: Endpoint,
    sonde_binary: Endpoint,
    node_metrics: Endpoint,
}

/// Each second, over keep-alive connections asking for gzip (as Prometheus
/// does): Sonde's /metrics, node_exporter's /metrics, and, after the
/// snapshot's TTL, Sonde's /metrics/binary (its own refresh).
fn scrape_phase(plan: &Plan, port: u16, ne_port: u16, agent: &Proc, ne: &Proc) -> Result<Scrape> {
    let mut sm = Endpoint::new(port, "/metrics");
    let mut sb = Endpoint::new(port, "/metrics/binary");
    let mut nm = Endpoint::new(ne_port, "/metrics");
    let (a0, n0, t0) = (agent.cpu(), ne.cpu(), Instant::now());
    for tick in 0..plan.scrape_secs {
        let next = t0 + Duration::from_secs(tick + 1);
        sm.pull()?;
        nm.pull()?;
        std::thread::sleep(Duration::from_millis(300));
        sb.pull()?;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (a1, n1) = (agent.cpu(), ne.cpu());
    sm.plain = get_once(port, "/metrics", false)?.body.len();
    sb.plain = get_once(port, "/metrics/binary", false)?.body.len();
    nm.plain = get_once(ne_port, "/metrics", false)?.body.len();
    let (rss, hwm) = agent.rss();
    let (nrss, nhwm) = ne.rss();
    let n = plan.scrape_secs as usize;
    Ok(Scrape {
        sonde: Side {
            cpu: a1 - a0,
            scrapes: 2 * n,
            secs,
            rss,
            hwm,
        },
        node: Side {
            cpu: n1 - n0,
            scrapes: n,
            secs,
            rss: nrss,
            hwm: nhwm,
        },
        sonde_metrics: sm,
        sonde_binary: sb,
        node_metrics: nm,
    })
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

fn getppid_ns(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per round trip of a byte between two processes on one CPU.
fn pingpong_ns(rounds: usize) -> f64 {
    let (mut a, mut b) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipes and a child that only reads, writes and _exits.
    unsafe {
        libc::pipe(a.as_mut_ptr());
        libc::pipe(b.as_mut_ptr());
        let mut byte = 0u8;
        let p = &mut byte as *mut u8 as *mut libc::c_void;
        let pid = libc::fork();
        if pid == 0 {
            for _ in 0..rounds {
                libc::read(a[0], p, 1);
                libc::write(b[1], p, 1);
            }
            libc::_exit(0);
        }
        let t = Instant::now();
        for _ in 0..rounds {
            libc::write(a[1], p, 1);
            libc::read(b[0], p, 1);
        }
        let ns = t.elapsed().as_nanos() as f64 / rounds as f64;
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        for fd in a.iter().chain(&b) {
            libc::close(*fd);
        }
        ns
    }
}

/// 4 KiB O_DIRECT writes per second, on the root disk.
fn odirect_iops(writes: usize) -> Result<f64> {
    let path = Path::new("/var/tmp").join(format!("sonde-bench-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    let layout = std::alloc::Layout::from_size_align(4096, 4096)?;
    // SAFETY: an aligned, zeroed 4 KiB buffer, freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    // SAFETY: `buf` is 4096 valid bytes.
    let slice = unsafe { std::slice::from_raw_parts(buf, 4096) };
    let t = Instant::now();
    for i in 0..writes {
        use std::os::unix::fs::FileExt;
        f.write_at(slice, (i % 1024) as u64 * 4096)?;
    }
    let iops = writes as f64 / t.elapsed().as_secs_f64();
    // SAFETY: freeing what alloc_zeroed returned.
    unsafe { std::alloc::dealloc(buf, layout) };
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(iops)
}

/// µs per loopback TCP connect + accept + close.
fn connect_us(n: usize) -> Result<f64> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let t = Instant::now();
    for _ in 0..n {
        let c = TcpStream::connect(addr)?;
        let (s, _) = l.accept()?;
        drop((c, s));
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// Medians of (off, on) per workload.
struct Overhead {
    getppid: (f64, f64),
    pingpong: (f64, f64),
    odirect: (f64, f64),
    connect: (f64, f64),
}

fn overhead_phase(plan: &Plan, cfg: &Path) -> Result<Overhead> {
    let mut samples: [Vec<(f64, f64)>; 4] = Default::default();
    let run = |on: bool| -> Result<[f64; 4]> {
        let agent = if on {
            let mut a = Proc::spawn(&sonde_bin(), &[cfg.to_str().unwrap()])?;
            a.wait_port(Duration::from_secs(30))?;
            std::thread::sleep(Duration::from_millis(500));
            Some(a)
        } else {
            None
        };
        pin(WORKLOAD_CPU);
        let r = [
            getppid_ns(plan.getppid),
            pingpong_ns(plan.rounds),
            odirect_iops(plan.writes)?,
            connect_us(plan.connects)?,
        ];
        drop(agent);
        Ok(r)
    };
    for i in 0..plan.runs {
        eprintln!("xtask: bench: run {}/{}", i + 1, plan.runs);
        let off = run(false)?;
        let on = run(true)?;
        for k in 0..4 {
            samples[k].push((off[k], on[k]));
        }
    }
    // SAFETY: restore this thread's affinity to every CPU.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(c, &mut all);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&all), &all);
    }
    let med = |v: &Vec<(f64, f64)>| {
        let mut off: Vec<f64> = v.iter().map(|x| x.0).collect();
        let mut on: Vec<f64> = v.iter().map(|x| x.1).collect();
        off.sort_by(f64::total_cmp);
        on.sort_by(f64::total_cmp);
        (off[off.len() / 2], on[on.len() / 2])
    };
    Ok(Overhead {
        getppid: med(&samples[0]),
        pingpong: med(&samples[1]),
        odirect: med(&samples[2]),
        connect: med(&samples[3]),
    })
}

#[derive(Default)]
struct Report {
    text: String,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn kb(b: usize) -> String {
    format!("{:.1} KB", b as f64 / 1e3)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "—".into()
    }
}

impl Report {
    fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }

    fn row(&mut self, cells: [&str; 5]) {
        self.line(&format!("| {} |", cells.join(" | ")));
    }

    fn table(
        &mut self,
        s: &Scrape,
        startup: Duration,
        startup_cpu: Duration,
        map_bytes: u64,
        o: &Overhead,
    ) {
        let per = |side: &Side| side.cpu / side.scrapes.max(1) as u32;
        let pct = |side: &Side| 100.0 * side.cpu.as_secs_f64() / side.secs;
        let (sp, np) = (per(&s.sonde), per(&s.node));
        self.line("\n## Scrape cost (1 Hz, same window)\n");
        self.row([
            "figure",
            "Sonde",
            "node_exporter",
            "ratio (Sonde / node)",
            "target",
        ]);
        self.row(["---", "---", "---", "---", "---"]);
        self.row([
            "CPU per scrape (refreshing)",
            &ms(sp),
            &ms(np),
            &ratio(sp.as_secs_f64(), np.as_secs_f64()),
            "≤ 0.33",
        ]);
        self.row([
            "CPU, % of one core",
            &format!("{:.3} %", pct(&s.sonde)),
            &format!("{:.3} %", pct(&s.node)),
            &ratio(pct(&s.sonde), pct(&s.node)),
            "",
        ]);
        self.row([
            "RSS",
            &mb(s.sonde.rss),
            &mb(s.node.rss),
            &ratio(s.sonde.rss as f64, s.node.rss as f64),
            "",
        ]);
        self.row([
            "peak RSS",
            &mb(s.sonde.hwm),
            &mb(s.node.hwm),
            &ratio(s.sonde.hwm as f64, s.node.hwm as f64),
            "≤ 12 MB",
        ]);
        for (name, e, n) in [
            ("/metrics", &s.sonde_metrics, Some(&s.node_metrics)),
            ("/metrics/binary", &s.sonde_binary, None),
        ] {
            let nb = n.map_or("—".to_string(), |n| kb(n.plain));
            let ng = n.map_or("—".to_string(), |n| kb(n.gzip));
            self.row([
                &format!("{name} body, plain"),
                &kb(e.plain),
                &nb,
                &n.map_or("—".into(), |n| ratio(e.plain as f64, n.plain as f64)),
                "",
            ]);
            if e.gzipped {
                self.row([
                    &format!("{name} body, gzip"),
                    &kb(e.gzip),
                    &ng,
                    &n.map_or("—".into(), |n| ratio(e.gzip as f64, n.gzip as f64)),
                    "",
                ]);
            } else {
                self.row([
                    &format!("{name} body, gzip"),
                    "not compressed",
                    &ng,
                    "—",
                    "",
                ]);
            }
            for (q, label, target) in [
                (0.5, "p50", if name == "/metrics" { "≤ 1 ms" } else { "" }),
                (0.99, "p99", ""),
            ] {
                let sv = e.quantile(q);
                let nv = n.map(|n| n.quantile(q));
                self.row([
                    &format!("{name} latency {label} (keep-alive, gzip asked)"),
                    &ms(sv),
                    &nv.map_or("—".into(), ms),
                    &nv.map_or("—".into(), |nv| ratio(sv.as_secs_f64(), nv.as_secs_f64())),
                    target,
                ]);
            }
        }
        self.row(["startup, exec to first scrape", &ms(startup), "—", "—", ""]);
        self.row([
            "startup CPU (load + attach all BPF)",
            &ms(startup_cpu),
            "—",
            "—",
            "≤ 500 ms",
        ]);
        self.row([
            "BPF map kernel memory",
            &format!("{:.1} MiB", map_bytes as f64 / (1 << 20) as f64),
            "—",
            "—",
            "≤ 32 MiB",
        ]);

        self.line("\n## Per-event overhead (agent off → on, all samplers, medians)\n");
        self.row(["workload", "off", "on", "change", "target"]);
        self.row(["---", "---", "---", "---", "---"]);
        let (a, b) = o.getppid;
        self.row([
            "`getppid()`",
            &format!("{a:.1} ns"),
            &format!("{b:.1} ns"),
            &format!("{:+.1} ns", b - a),
            "≤ +80 ns",
        ]);
        let (a, b) = o.pingpong;
        self.row([
            "pipe ping-pong round trip",
            &format!("{a:.0} ns"),
            &format!("{b:.0} ns"),
            &format!("{:+.0} ns", b - a),
            "",
        ]);
        let (a, b) = o.odirect;
        self.row([
            "4 KiB O_DIRECT writes",
            &format!("{a:.0} IOPS"),
            &format!("{b:.0} IOPS"),
            &format!("{:+.1} %", 100.0 * (b - a) / a),
            "within 3 %",
        ]);
        let (a, b) = o.connect;
        self.row([
            "loopback TCP connect + accept + close",
            &format!("{a:.1} µs"),
            &format!("{b:.1} µs"),
            &format!("{:+.1} µs", b - a),
            "",
        ]);
    }
}
