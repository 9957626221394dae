//! Pusher fan-in: PUSHERS pushers, one per stand-in host, each with its
//! own spool and `[source] labels = { instance = "host-N" }`, pull a
//! stand-in of the bench agent every second and remote-write into one
//! Debian Prometheus. Measured over 30 s: the samples per second the
//! receiver takes, each pusher's CPU and RSS, Prometheus's CPU. Then the
//! stand-ins stop answering, the backlogs drain, and each host's stored
//! samples are compared with its pusher's pulls: nothing may be lost.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::fleet::stand_in;
use super::proc::{free_port, get_once, wait_http, Proc};
use super::sonde_bin;

pub const PUSHERS: usize = 20;
const WINDOW: Duration = Duration::from_secs(30);

pub struct FanIn {
    pub samples_per_sec: f64,
    pub pusher_cpu: (Duration, Duration),
    pub pusher_rss: (u64, u64),
    pub prometheus_cpu: Duration,
    /// Hosts whose stored samples equal their pulls.
    pub complete: usize,
    pub pulled: f64,
    pub stored: f64,
}

/// The sum of `metric`'s samples in a pusher's own `/metrics`.
fn own(port: u16, metric: &str) -> Result<f64> {
    let body = get_once(port, "/metrics", false)?.body;
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// An instant query's first value.
fn query(port: u16, q: &str) -> Result<Option<f64>> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = get_once(port, &format!("/api/v1/query?query={enc}"), false)?.body;
    let v: serde_json::Value = serde_json::from_slice(&body).context("Prometheus's answer")?;
    Ok(v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok()))
}

pub fn measure(agent_port: u16, dir: &Path) -> Result<FanIn> {
    let prom_port = free_port()?;
    let prom_dir = dir.join("fanin-prometheus");
    let _ = std::fs::remove_dir_all(&prom_dir);
    std::fs::create_dir_all(&prom_dir)?;
    let prom_config = prom_dir.join("prometheus.yml");
    std::fs::write(&prom_config, "global:\n  scrape_interval: 15s\n")?;
    let prom = Proc::spawn_quiet(
        Path::new("/usr/bin/prometheus"),
        &[
            &format!("--config.file={}", prom_config.display()),
            &format!("--storage.tsdb.path={}", prom_dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--web.enable-remote-write-receiver",
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_once(prom_port, "/-/ready", false)
        .ok()
        .map(|r| r.status)
        != Some(200)
    {
        if Instant::now() > deadline {
            bail!("Prometheus not ready after 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let on = Arc::new(AtomicBool::new(true));
    let mut pushers = Vec::new();
    for i in 0..PUSHERS {
        let source = stand_in(agent_port, Duration::ZERO, Arc::clone(&on))?;
        let port = free_port()?;
        let spool = dir.join(format!("fanin-spool{i}"));
        let _ = std::fs::remove_dir_all(&spool);
        let config = format!(
            "[source]\nurl = \"http://127.0.0.1:{source}\"\ninterval = \"1s\"\nlabels = {{ instance = \"host-{i}\" }}\n[spool]\npath = \"{}\"\n[listen]\naddress = \"127.0.0.1:{port}\"\n[[sinks]]\nkind = \"remote_write\"\nurl = \"http://127.0.0.1:{prom_port}/api/v1/write\"\n",
            spool.display()
        );
        let path = dir.join(format!("fanin-push{i}.toml"));
        std::fs::write(&path, config)?;
        pushers.push((
            port,
            Proc::spawn(&sonde_bin(), &["push", path.to_str().unwrap()])?,
        ));
    }
    for (port, _) in &pushers {
        wait_http(*port, Duration::from_secs(20))?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(prom_port, "count(count by (instance) (memory_total_bytes))")?
        != Some(PUSHERS as f64)
    {
        if Instant::now() > deadline {
            bail!("not every pusher's series in Prometheus after 30 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let sent = |pushers: &[(u16, Proc)]| -> Result<f64> {
        pushers
            .iter()
            .map(|(p, _)| own(*p, "sonde_push_samples_sent_total"))
            .sum()
    };
    let cpu0: Vec<Duration> = pushers.iter().map(|(_, p)| p.cpu()).collect();
    let (prom0, sent0, t0) = (prom.cpu(), sent(&pushers)?, Instant::now());
    std::thread::sleep(WINDOW);
    let secs = t0.elapsed().as_secs_f64();
    let samples_per_sec = (sent(&pushers)? - sent0) / secs;
    let prometheus_cpu = (prom.cpu() - prom0).div_f64(secs);
    let mut cpu: Vec<Duration> = pushers
        .iter()
        .zip(cpu0)
        .map(|((_, p), c0)| (p.cpu() - c0).div_f64(secs))
        .collect();
    let mut rss: Vec<u64> = pushers.iter().map(|(_, p)| p.rss().1).collect();
    cpu.sort();
    rss.sort();

    // Pulls stop; each backlog drains; then every pull must be stored.
    on.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let (mut complete, mut pulled, mut stored) = (0, 0.0, 0.0);
    for (i, (port, _)) in pushers.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while own(*port, "sonde_push_backlog")? > 0.0 {
            if Instant::now() > deadline {
                bail!("host-{i}'s backlog not empty after 30 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let p = own(*port, "sonde_push_pulls_total{result=\"ok\"}")?;
        let q = format!("count_over_time(memory_total_bytes{{instance=\"host-{i}\"}}[15m])");
        let s = query(prom_port, &q)?.unwrap_or(0.0);
        complete += usize::from(p == s);
        pulled += p;
        stored += s;
    }
    Ok(FanIn {
        samples_per_sec,
        pusher_cpu: (cpu[cpu.len() / 2], cpu[cpu.len() - 1]),
        pusher_rss: (rss[rss.len() / 2], rss[rss.len() - 1]),
        prometheus_cpu,
        complete,
        pulled,
        stored,
    })
}
