//! The cost of the per-container and per-process samplers' background
//! passes: 200 cgroups (each with a sleeping task) and 2,000 processes,
//! walked every second. Reported: the wall time of one pass (the samplers'
//! own gauges) and the agent's CPU per second.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::proc::{get_once, Proc};
use super::sonde_bin;

pub const CGROUPS: usize = 200;
pub const PROCESSES: usize = 2000;

pub struct Containers {
    pub cgroup_pass: Duration,
    pub processes_pass: Option<Duration>,
    pub exported: u64,
    /// Agent CPU per second with only these two samplers on.
    pub cpu_per_sec: Duration,
    pub rss: u64,
}

/// A cgroup made in every v1 controller hierarchy (or the v2 root).
struct Made(Vec<PathBuf>);

impl Drop for Made {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let v1: Vec<PathBuf> = ["cpu", "cpuacct", "memory", "blkio"]
        .iter()
        .map(|c| base.join(c))
        .filter(|p| p.is_dir())
        .collect();
    if v1.is_empty() {
        vec![base.to_path_buf()]
    } else {
        v1
    }
}

pub fn measure(dir: &Path, base_config: &Path) -> Result<Containers> {
    let tag = format!("sondebench{}", std::process::id());
    let mut made = Vec::new();
    let mut sleepers: Vec<Child> = Vec::new();
    let result = (|| {
        for i in 0..CGROUPS {
            let rel = format!("{tag}.slice/docker-{:064x}.scope", i + 1);
            let dirs: Vec<PathBuf> = hierarchies().iter().map(|h| h.join(&rel)).collect();
            for d in &dirs {
                std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
            }
            let child = Command::new("sleep")
                .arg("600")
                .stdout(Stdio::null())
                .spawn()?;
            for d in &dirs {
                std::fs::write(d.join("cgroup.procs"), child.id().to_string())?;
            }
            sleepers.push(child);
            made.push(Made(dirs));
        }
        while sleepers.len() < PROCESSES {
            sleepers.push(
                Command::new("sleep")
                    .arg("600")
                    .stdout(Stdio::null())
                    .spawn()?,
            );
        }
        let config = config(dir, base_config)?;
        let mut agent = Proc::spawn(&sonde_bin(), &[config.to_str().unwrap()])?;
        let port = agent.wait_port(Duration::from_secs(30))?;
        std::thread::sleep(Duration::from_secs(4));
        let c0 = agent.cpu();
        let secs = 20;
        let mut cg = Vec::new();
        let mut pr = Vec::new();
        let mut exported = 0;
        for _ in 0..secs {
            std::thread::sleep(Duration::from_secs(1));
            let text = get_once(port, "/metrics", false)?.body;
            let text = String::from_utf8_lossy(&text);
            let value = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
            };
            if let Some(v) = value("sonde_cgroup_pass_seconds") {
                cg.push(v);
            }
            if let Some(v) = value("sonde_processes_walk_duration_seconds") {
                pr.push(v);
            }
            exported = value("sonde_cgroups").unwrap_or(0.0) as u64;
        }
        let cpu = agent.cpu().saturating_sub(c0);
        let (rss, _) = agent.rss();
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        Ok(Containers {
            cgroup_pass: Duration::from_secs_f64(median(&mut cg).unwrap_or(0.0)),
            processes_pass: median(&mut pr).map(Duration::from_secs_f64),
            exported,
            cpu_per_sec: cpu / secs,
            rss,
        })
    })();
    for mut s in sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    drop(made);
    for h in hierarchies() {
        let _ = std::fs::remove_dir(h.join(format!("{tag}.slice")));
    }
    result
}

/// Only the cgroup and processes samplers, every second, no age limit.
fn config(dir: &Path, base: &Path) -> Result<PathBuf> {
    let v = super::overhead::Variant {
        name: "containers",
        samplers: Some(&["cgroup", "processes"]),
        set: &[
            ("cgroup", "interval", "\"1s\""),
            ("cgroup", "min_age", "\"0s\""),
            ("processes", "interval", "\"1s\""),
        ],
    };
    super::overhead::variant_config(base, dir, 900, &v)
}
