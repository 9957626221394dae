//! The workloads the agent's per-event cost is measured on: loops that hit
//! one hook hard, and real servers from Debian packages driven by their
//! own load generators on loopback.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::proc::{free_port, pin, Proc};
use super::Plan;

/// The CPU the single-threaded loops are pinned to; the agent may use
/// the other.
pub const WORKLOAD_CPU: usize = 1;
/// Servers run on WORKLOAD_CPU, their load generators here.
pub const CLIENT_CPU: usize = 0;

/// What a workload's target is about.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// At most this many ns added per operation (lower is better).
    AddedNs(f64),
    /// At most this many percent lost (throughput) or added (time).
    Percent(f64),
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A time per operation: lower is better.
    Time,
    /// Operations per second: higher is better.
    Rate,
}

/// One measurement: the figure and how many operations it took.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub value: f64,
    pub ops: u64,
}

pub struct Workload {
    pub name: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    pub target: Target,
    /// What one operation is, for the per-program table.
    pub op: &'static str,
}

pub const WORKLOADS: [Workload; 7] = [
    Workload {
        name: "`getppid()`",
        unit: "ns",
        kind: Kind::Time,
        target: Target::AddedNs(80.0),
        op: "call",
    },
    Workload {
        name: "pipe ping-pong round trip",
        unit: "ns",
        kind: Kind::Time,
        target: Target::Percent(15.0),
        op: "round trip",
    },
    Workload {
        name: "4 KiB O_DIRECT writes",
        unit: "IOPS",
        kind: Kind::Rate,
        target: Target::Percent(3.0),
        op: "write",
    },
    Workload {
        name: "loopback TCP connect + accept + close",
        unit: "µs",
        kind: Kind::Time,
        target: Target::None,
        op: "connection",
    },
    Workload {
        name: "nginx + wrk (loopback, 1 worker, `return 200`)",
        unit: "req/s",
        kind: Kind::Rate,
        target: Target::Percent(5.0),
        op: "request",
    },
    Workload {
        name: "redis-benchmark `-t get,set`",
        unit: "req/s",
        kind: Kind::Rate,
        target: Target::Percent(3.0),
        op: "request",
    },
    Workload {
        name: "fio 4 KiB random read/write, O_DIRECT",
        unit: "IOPS",
        kind: Kind::Rate,
        target: Target::Percent(3.0),
        op: "I/O",
    },
];

/// Index of the nginx workload (the per-sampler breakdown runs it).
pub const NGINX: usize = 4;

/// The servers the real workloads drive, started once for the whole bench.
pub struct Servers {
    dir: PathBuf,
    _nginx: Proc,
    nginx_port: u16,
    _redis: Proc,
    redis_port: u16,
}

impl Servers {
    pub fn start(dir: &Path) -> Result<Servers> {
        let nginx_dir = dir.join("nginx");
        std::fs::create_dir_all(nginx_dir.join("logs"))?;
        let nginx_port = free_port()?;
        let conf = nginx_dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
                 fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
                 server {{\n    listen 127.0.0.1:{nginx_port};\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n}}\n",
                d = nginx_dir.display()
            ),
        )?;
        let nginx = Proc::spawn_on(
            WORKLOAD_CPU,
            Path::new("/usr/sbin/nginx"),
            &["-p", path(&nginx_dir), "-c", path(&conf)],
        )?;
        let redis_port = free_port()?;
        let redis = Proc::spawn_on(
            WORKLOAD_CPU,
            Path::new("/usr/bin/redis-server"),
            &[
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                path(dir),
            ],
        )?;
        for port in [nginx_port, redis_port] {
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    bail!("a workload server did not listen on port {port}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(Servers {
            dir: dir.to_path_buf(),
            _nginx: nginx,
            nginx_port,
            _redis: redis,
            redis_port,
        })
    }

    /// Runs workload `i` once (pinned as its doc says).
    pub fn run(&self, plan: &Plan, i: usize) -> Result<Sample> {
        pin(WORKLOAD_CPU);
        match i {
            0 => Ok(Sample {
                value: getppid_ns(plan.getppid),
                ops: plan.getppid,
            }),
            1 => Ok(Sample {
                value: pingpong_ns(plan.rounds),
                ops: plan.rounds as u64,
            }),
            2 => odirect_iops(&self.dir, plan.writes),
            3 => connect_us(plan.connects),
            4 => self.wrk(plan.secs),
            5 => self.redis_benchmark(plan.redis_requests),
            6 => fio(&self.dir, plan.secs),
            _ => bail!("no workload {i}"),
        }
    }

    fn wrk(&self, secs: u64) -> Result<Sample> {
        let out = output_on(
            CLIENT_CPU,
            Command::new("wrk").args([
                "-t1",
                "-c10",
                &format!("-d{secs}s"),
                &format!("http://127.0.0.1:{}/", self.nginx_port),
            ]),
        )?;
        // "  335195 requests in 5.00s, 47.95MB read" and "Requests/sec: 67032.20"
        let requests = out
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse().ok())
            .context("wrk printed no request count")?;
        let rate = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .context("wrk printed no Requests/sec")?;
        Ok(Sample {
            value: rate,
            ops: requests,
        })
    }

    fn redis_benchmark(&self, n: u64) -> Result<Sample> {
        let out = output_on(
            CLIENT_CPU,
            Command::new("redis-benchmark").args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.redis_port.to_string(),
                "-t",
                "get,set",
                "-n",
                &n.to_string(),
                "--csv",
            ]),
        )?;
        // "test","rps",... then "SET","71428.57",... and "GET",...
        let rates: Vec<f64> = out
            .lines()
            .filter(|l| l.starts_with("\"SET\"") || l.starts_with("\"GET\""))
            .filter_map(|l| l.split(',').nth(1))
            .filter_map(|v| v.trim_matches('"').parse().ok())
            .collect();
        if rates.len() != 2 {
            bail!("redis-benchmark printed no SET and GET rates:\n{out}");
        }
        Ok(Sample {
            // Both tests ran n requests: the rate over the whole run.
            value: 2.0 / (1.0 / rates[0] + 1.0 / rates[1]),
            ops: 2 * n,
        })
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("bench paths are UTF-8")
}

/// Runs `cmd` pinned to `cpu` and returns its stdout.
fn output_on(cpu: usize, cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let mut full = Command::new("taskset");
    full.arg("-c")
        .arg(cpu.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    let out = full
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

/// 4 KiB O_DIRECT writes per second, on the disk under `dir` (not tmpfs).
fn odirect_iops(dir: &Path, writes: usize) -> Result<Sample> {
    let path = dir.join("odirect");
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
    let mut result = Ok(());
    for i in 0..writes {
        use std::os::unix::fs::FileExt;
        if let Err(e) = f.write_at(slice, (i % 1024) as u64 * 4096) {
            result = Err(e);
            break;
        }
    }
    let iops = writes as f64 / t.elapsed().as_secs_f64();
    // SAFETY: freeing what alloc_zeroed returned.
    unsafe { std::alloc::dealloc(buf, layout) };
    drop(f);
    std::fs::remove_file(&path)?;
    result?;
    Ok(Sample {
        value: iops,
        ops: writes as u64,
    })
}

/// µs per loopback TCP connect + accept + close.
fn connect_us(n: usize) -> Result<Sample> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let t = Instant::now();
    for _ in 0..n {
        let c = TcpStream::connect(addr)?;
        let (s, _) = l.accept()?;
        drop((c, s));
    }
    Ok(Sample {
        value: t.elapsed().as_secs_f64() * 1e6 / n as f64,
        ops: n as u64,
    })
}

/// fio: 4 KiB random reads and writes (50/50), O_DIRECT, one job, on the
/// disk under `dir`; total IOPS.
fn fio(dir: &Path, secs: u64) -> Result<Sample> {
    let file = dir.join("fio.data");
    let out = output_on(
        WORKLOAD_CPU,
        Command::new("fio").args([
            "--name=sonde",
            &format!("--filename={}", path(&file)),
            "--size=64M",
            "--rw=randrw",
            "--bs=4k",
            "--direct=1",
            "--ioengine=psync",
            &format!("--runtime={secs}"),
            "--time_based",
            "--output-format=json",
        ]),
    )?;
    let json = &out[out.find('{').context("fio printed no JSON")?..];
    let v: serde_json::Value = serde_json::from_str(json).context("fio's JSON")?;
    let job = &v["jobs"][0];
    let iops =
        job["read"]["iops"].as_f64().unwrap_or(0.0) + job["write"]["iops"].as_f64().unwrap_or(0.0);
    let ios = job["read"]["total_ios"].as_u64().unwrap_or(0)
        + job["write"]["total_ios"].as_u64().unwrap_or(0);
    if ios == 0 {
        bail!("fio did no I/O:\n{out}");
    }
    Ok(Sample {
        value: iops,
        ops: ios,
    })
}
