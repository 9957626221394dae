//! The agent's `/top` table: the processes that used the most CPU over the
//! last walk, and the largest by resident memory. Built by the walker
//! after each walk and kept as a finished JSON body, so serving it costs a
//! lock and a reference count. No pid ever becomes a Prometheus series.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use super::procfs;

/// A live process as the walk last saw it.
pub struct Candidate<'a> {
    pub pid: u32,
    pub comm: &'a [u8],
    pub uid: u32,
    pub rss: u64,
    pub threads: u64,
    /// CPU ns per second over the last walk.
    pub cpu_rate: f64,
    pub read_rate: f64,
    pub write_rate: f64,
}

#[derive(Clone, Copy)]
struct Entry {
    pid: u32,
    comm: [u8; 16],
    comm_len: u8,
    uid: u32,
    rss: u64,
    threads: u64,
    cpu_rate: f64,
    read_rate: f64,
    write_rate: f64,
}

#[derive(Serialize)]
struct Table {
    interval_seconds: f64,
    /// When the walk ended, seconds since the Unix epoch.
    timestamp: f64,
    /// Processes the walk saw.
    processes: usize,
    by_cpu: Vec<Row>,
    by_rss: Vec<Row>,
}

#[derive(Serialize)]
struct Row {
    pid: u32,
    comm: String,
    user: String,
    cgroup: String,
    /// The container (or systemd unit) the cgroup path names: its name, or
    /// the first 12 hex of its id; empty when the path names none.
    container: String,
    /// Of one CPU: 200 is two CPUs busy for the whole interval.
    cpu_percent: f64,
    rss_bytes: u64,
    read_bytes_per_second: f64,
    write_bytes_per_second: f64,
    threads: u64,
}

enum State {
    /// The sampler is disabled or failed to start.
    Off,
    /// `top = 0`.
    Disabled,
    Ready(Bytes),
}

static STATE: Mutex<State> = Mutex::new(State::Off);

fn set(state: State) {
    *STATE.lock().unwrap_or_else(|e| e.into_inner()) = state;
}

/// The latest table as JSON, or why there is none.
pub fn json() -> Result<Bytes, &'static str> {
    match &*STATE.lock().unwrap_or_else(|e| e.into_inner()) {
        State::Ready(b) => Ok(b.clone()),
        State::Disabled => Err("/top is disabled: [samplers.processes] top = 0"),
        State::Off => Err(
            "/top needs the processes sampler, which is not running: it is disabled in the config or failed to start (see /samplers)",
        ),
    }
}

/// Marks /top as off (the sampler stopped) or disabled by `top = 0`.
pub fn disable(by_config: bool) {
    set(if by_config {
        State::Disabled
    } else {
        State::Off
    });
}

/// User names by uid from /etc/passwd, read again when it changes.
#[derive(Default)]
struct Users {
    names: HashMap<u32, String>,
    modified: Option<SystemTime>,
}

impl Users {
    fn refresh(&mut self) {
        let modified = std::fs::metadata("/etc/passwd")
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified && !self.names.is_empty() {
            return;
        }
        self.modified = modified;
        self.names = std::fs::read_to_string("/etc/passwd")
            .map(|t| parse_passwd(&t))
            .unwrap_or_default();
    }

    fn name(&self, uid: u32) -> String {
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }
}

/// `name:x:uid:gid:…` lines → uid → name (the first line of a uid wins).
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) {
            if let Ok(uid) = uid.parse() {
                names.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }
    names
}

pub struct Top {
    n: usize,
    interval: Duration,
    users: Users,
    entries: Vec<Entry>,
    text: Vec<u8>,
}

impl Top {
    pub fn new(n: usize, interval: Duration) -> Top {
        Top {
            n,
            interval,
            users: Users::default(),
            entries: Vec::new(),
            text: Vec::new(),
        }
    }

    /// Ranks the walk's processes and stores the table.
    pub fn publish<'a>(&mut self, procs: impl Iterator<Item = Candidate<'a>>, total: usize) {
        self.entries.clear();
        self.entries.extend(procs.map(|c| {
            let len = c.comm.len().min(16);
            let mut comm = [0; 16];
            comm[..len].copy_from_slice(&c.comm[..len]);
            Entry {
                pid: c.pid,
                comm,
                comm_len: len as u8,
                uid: c.uid,
                rss: c.rss,
                threads: c.threads,
                cpu_rate: c.cpu_rate,
                read_rate: c.read_rate,
                write_rate: c.write_rate,
            }
        }));
        self.users.refresh();
        let mut entries = std::mem::take(&mut self.entries);
        let n = self.n.min(entries.len());
        // Ties broken by pid, so the order is stable between walks.
        entries.sort_unstable_by(|a, b| {
            b.cpu_rate
                .total_cmp(&a.cpu_rate)
                .then(b.rss.cmp(&a.rss))
                .then(a.pid.cmp(&b.pid))
        });
        let by_cpu = entries[..n].iter().map(|e| self.row(e)).collect();
        entries.sort_unstable_by(|a, b| b.rss.cmp(&a.rss).then(a.pid.cmp(&b.pid)));
        let by_rss = entries[..n].iter().map(|e| self.row(e)).collect();
        self.entries = entries;
        let table = Table {
            interval_seconds: self.interval.as_secs_f64(),
            timestamp: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0),
            processes: total,
            by_cpu,
            by_rss,
        };
        let body = serde_json::to_vec(&table).unwrap_or_default();
        set(State::Ready(Bytes::from(body)));
    }

    fn row(&mut self, e: &Entry) -> Row {
        let path = format!("/proc/{}/cgroup", e.pid);
        let cgroup = if procfs::read_file(&path, &mut self.text) {
            procfs::parse_cgroup(&String::from_utf8_lossy(&self.text)).to_string()
        } else {
            String::new()
        };
        let named = crate::samplers::cgroup::names::from_path(&cgroup);
        let container = named
            .name
            .or_else(|| named.container_id.map(|id| id.chars().take(12).collect()))
            .unwrap_or_default();
        Row {
            container,
            pid: e.pid,
            comm: String::from_utf8_lossy(&e.comm[..e.comm_len as usize]).into_owned(),
            user: self.users.name(e.uid),
            cgroup,
            cpu_percent: (e.cpu_rate / 1e7 * 10.0).round() / 10.0,
            rss_bytes: e.rss,
            read_bytes_per_second: e.read_rate.round(),
            write_bytes_per_second: e.write_rate.round(),
            threads: e.threads,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_names() {
        let names = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nbroken\ntoor:x:0:0::/:/bin/sh\n",
        );
        assert_eq!(names[&0], "root");
        assert_eq!(names[&33], "www-data");
        assert_eq!(names.len(), 2);
    }
}
