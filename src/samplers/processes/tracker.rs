//! The walk over /proc and the accounting that keeps group counters whole
//! while processes come and go.
//!
//! A group's counter is `base + Σ (last − offset)` over its live members:
//! `last` is a member's latest reading, `offset` what it had when it joined
//! (0, or its reading when a rename moved it from another group). When a
//! member leaves, what it counted moves into `base`, so the sum never goes
//! down. What it used between the last walk and its end comes from its exit
//! record (BPF), matched by pid and start time:
//! - a member the walk still tracks: `base += final − offset`, and the walk
//!   then forgets it without adding again;
//! - a member the walk already saw vanish (`departed`, which added `last`):
//!   `base += final − last`;
//! - a process no walk saw (born and ended between two walks): its group,
//!   decided by its command name, gets all of `final`.
//!
//! Without exit records a vanished member keeps what the last walk saw.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::exits::Exit;
use super::groups::{Classifier, Facts, Group, Totals};
use super::procfs::{self, parse_io, parse_stat, parse_status};
use super::top::{Candidate, Top};
use crate::bpf::consts::processes::PROCESSES_PF_KTHREAD;
use crate::registry::Series;

/// Refused group names remembered (so each is counted once).
const REFUSED_CAP: usize = 65_536;
/// Walks a vanished member waits for its exit record.
const DEPARTED_WALKS: u64 = 2;

pub struct Settings {
    pub classifier: Classifier,
    pub max_groups: usize,
    pub kernel_threads: bool,
    pub forget_after: Duration,
    /// Exit records arrive (BPF attached): vanished members wait for theirs.
    pub exits: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    fn new(b: &[u8]) -> Comm {
        let len = b.len().min(16);
        let mut bytes = [0; 16];
        bytes[..len].copy_from_slice(&b[..len]);
        Comm {
            bytes,
            len: len as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

struct Proc {
    start: u64,
    seen: u64,
    comm: Comm,
    group: Option<Arc<str>>,
    last: Totals,
    offset: Totals,
    /// Its exit record was counted; the walk must not count it again.
    exited: bool,
    kthread: bool,
    uid: u32,
    rss: u64,
    vsize: u64,
    swap: u64,
    threads: u64,
    fds: u64,
    /// Over the last walk: CPU ns per second, bytes per second.
    cpu_rate: f64,
    read_rate: f64,
    write_rate: f64,
}

struct Departed {
    group: Arc<str>,
    last: Totals,
    pass: u64,
}

pub struct Tracker {
    settings: Settings,
    ns_per_tick: u64,
    page_size: u64,
    procs: HashMap<u32, Proc>,
    departed: HashMap<(u32, u64), Departed>,
    groups: HashMap<Arc<str>, Group>,
    refused: HashSet<String>,
    dropped: Arc<Series>,
    walk_time: Arc<Series>,
    pass: u64,
    /// When the last walk ran (monotonic, and CLOCK_BOOTTIME ns).
    last_walk: Option<(Instant, u64)>,
    pub top: Option<Top>,
    pids: Vec<u32>,
    gone: Vec<u32>,
    text: Vec<u8>,
    dir: Vec<u8>,
    path: String,
}

fn boottime_ns() -> u64 {
    // SAFETY: a valid out-pointer for clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Tracker {
    pub fn new(
        settings: Settings,
        top: Option<Top>,
        dropped: Arc<Series>,
        walk_time: Arc<Series>,
    ) -> Tracker {
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        Tracker {
            settings,
            ns_per_tick: crate::samplers::common::ns_per_tick(),
            page_size,
            procs: HashMap::new(),
            departed: HashMap::new(),
            groups: HashMap::new(),
            refused: HashSet::new(),
            dropped,
            walk_time,
            pass: 0,
            last_walk: None,
            top,
            pids: Vec::new(),
            gone: Vec::new(),
            text: Vec::with_capacity(4096),
            dir: Vec::new(),
            path: String::with_capacity(64),
        }
    }

    /// The group named `name`, created when there is room.
    fn group(&mut self, name: &str) -> Option<Arc<str>> {
        if let Some((k, _)) = self.groups.get_key_value(name) {
            return Some(Arc::clone(k));
        }
        if self.groups.len() >= self.settings.max_groups {
            if self.refused.len() < REFUSED_CAP && self.refused.insert(name.to_string()) {
                self.dropped.add(1);
            }
            return None;
        }
        let key: Arc<str> = Arc::from(name);
        self.groups.insert(Arc::clone(&key), Group::new(name));
        Some(key)
    }

    fn classify(&mut self, pid: u32, comm: &[u8]) -> Option<Arc<str>> {
        let comm = String::from_utf8_lossy(comm);
        let mut exe = || {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        };
        let mut cmdline = || {
            std::fs::read(format!("/proc/{pid}/cmdline")).ok().map(|b| {
                let s = String::from_utf8_lossy(&b);
                s.trim_end_matches('\0').replace('\0', " ")
            })
        };
        let name = self.settings.classifier.classify(Facts {
            comm: &comm,
            exe: &mut exe,
            cmdline: &mut cmdline,
        })?;
        self.group(&name)
    }

    /// A member left (ended or moved): what it counted stays in its group.
    fn leave(&mut self, group: &Option<Arc<str>>, counted: Totals) {
        if let Some(g) = group.as_deref().and_then(|g| self.groups.get_mut(g)) {
            g.base.add(counted);
        }
    }

    /// One exit record.
    pub fn exit(&mut self, e: &Exit) {
        if e.kernel_thread() && !self.settings.kernel_threads {
            return;
        }
        let start = e.start_ns / self.ns_per_tick;
        let (user, system) = e.cpu();
        let last = Totals {
            user,
            system,
            read: e.read_bytes,
            write: e.write_bytes,
        };
        if let Some(p) = self.procs.get_mut(&e.tgid).filter(|p| p.start == start) {
            if p.exited {
                return;
            }
            p.exited = true;
            let last = last.max(p.last);
            let (group, counted) = (p.group.clone(), last.minus(p.offset));
            p.last = last;
            self.leave(&group, counted);
        } else if let Some(d) = self.departed.remove(&(e.tgid, start)) {
            let more = last.max(d.last).minus(d.last);
            self.leave(&Some(d.group), more);
        } else {
            let comm = String::from_utf8_lossy(e.comm());
            let Some(name) = self.settings.classifier.classify_comm(&comm) else {
                return;
            };
            let group = self.group(&name);
            self.leave(&group, last);
        }
    }

    /// Walks /proc once: refreshes every process, the groups' series and
    /// the /top table.
    pub fn walk(&mut self) {
        let started = Instant::now();
        let boot_ns = boottime_ns();
        let elapsed = self
            .last_walk
            .map(|(t, b)| (started.duration_since(t).as_secs_f64(), b));
        self.pass += 1;
        let mut pids = std::mem::take(&mut self.pids);
        pids.clear();
        procfs::for_each_entry("/proc", &mut self.dir, |name| {
            if let Some(pid) = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) {
                pids.push(pid);
            }
        });
        for &pid in &pids {
            self.visit(pid, elapsed);
        }
        self.pids = pids;

        // Processes no longer listed.
        let pass = self.pass;
        let mut gone = std::mem::take(&mut self.gone);
        gone.clear();
        gone.extend(
            self.procs
                .iter()
                .filter(|(_, p)| p.seen != pass)
                .map(|(pid, _)| *pid),
        );
        for pid in &gone {
            if let Some(p) = self.procs.remove(pid) {
                self.vanish(*pid, p);
            }
        }
        self.gone = gone;
        self.departed.retain(|_, d| pass - d.pass <= DEPARTED_WALKS);

        self.publish(started);
        if let Some(top) = &mut self.top {
            top.publish(
                self.procs
                    .iter()
                    .filter(|(_, p)| !p.exited)
                    .map(|(pid, p)| Candidate {
                        pid: *pid,
                        comm: p.comm.as_bytes(),
                        uid: p.uid,
                        rss: p.rss,
                        threads: p.threads,
                        cpu_rate: p.cpu_rate,
                        read_rate: p.read_rate,
                        write_rate: p.write_rate,
                    }),
                self.procs.len(),
            );
        }
        self.last_walk = Some((started, boot_ns));
        self.walk_time
            .set_gauge(started.elapsed().as_nanos() as i64);
    }

    fn vanish(&mut self, pid: u32, p: Proc) {
        if p.exited {
            return;
        }
        let counted = p.last.minus(p.offset);
        self.leave(&p.group, counted);
        if let (true, Some(group)) = (self.settings.exits, p.group) {
            self.departed.insert(
                (pid, p.start),
                Departed {
                    group,
                    last: p.last,
                    pass: self.pass,
                },
            );
        }
    }

    fn visit(&mut self, pid: u32, elapsed: Option<(f64, u64)>) {
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/stat");
        if !procfs::read_file(&self.path, &mut self.text) {
            return; // ended since the listing
        }
        let Some(st) = parse_stat(&self.text) else {
            return;
        };
        let comm = Comm::new(st.comm);
        let kthread = st.flags & PROCESSES_PF_KTHREAD as u64 != 0;
        let (start, threads) = (st.start, st.threads);
        let (rss, vsize) = (st.rss * self.page_size, st.vsize);
        let mut now = Totals {
            user: st.utime * self.ns_per_tick,
            system: st.stime * self.ns_per_tick,
            read: 0,
            write: 0,
        };
        let counted = !kthread || self.settings.kernel_threads;

        // A pid reused by a new process: the old one ended.
        if self.procs.get(&pid).is_some_and(|p| p.start != start) {
            if let Some(old) = self.procs.remove(&pid) {
                self.vanish(pid, old);
            }
        }
        let (mut uid, mut swap) = (0, 0);
        if !kthread {
            self.path.truncate(self.path.len() - "stat".len());
            self.path.push_str("status");
            if procfs::read_file(&self.path, &mut self.text) {
                let s = parse_status(&self.text);
                (uid, swap) = (s.uid, s.swap);
            }
            self.path.truncate(self.path.len() - "status".len());
            self.path.push_str("io");
            if procfs::read_file(&self.path, &mut self.text) {
                let io = parse_io(&self.text);
                (now.read, now.write) = (io.read_bytes, io.write_bytes);
            }
        }

        let pass = self.pass;
        let (group, is_new) = match self.procs.get(&pid) {
            Some(p) if p.exited => {
                self.procs.get_mut(&pid).unwrap().seen = pass;
                return;
            }
            Some(p) => {
                let renamed = p.comm != comm && self.settings.classifier.uses_comm();
                if renamed && counted {
                    // Matched again (e.g. after exec): the old group keeps
                    // what it counted, the new one counts from here on.
                    let (old, counted_so_far, last) =
                        (p.group.clone(), p.last.minus(p.offset), p.last);
                    let new = self.classify(pid, comm.as_bytes());
                    if new != old {
                        self.leave(&old, counted_so_far);
                        let p = self.procs.get_mut(&pid).unwrap();
                        p.offset = last;
                        p.group = new.clone();
                    }
                    (new, false)
                } else {
                    (p.group.clone(), false)
                }
            }
            None => {
                let group = if counted {
                    self.classify(pid, comm.as_bytes())
                } else {
                    None
                };
                self.procs.insert(
                    pid,
                    Proc {
                        start,
                        seen: pass,
                        comm,
                        group: group.clone(),
                        last: Totals::default(),
                        offset: Totals::default(),
                        exited: false,
                        kthread,
                        uid: 0,
                        rss: 0,
                        vsize: 0,
                        swap: 0,
                        threads: 0,
                        fds: 0,
                        cpu_rate: 0.0,
                        read_rate: 0.0,
                        write_rate: 0.0,
                    },
                );
                (group, true)
            }
        };
        let fds = if group.is_some() {
            self.path.truncate(self.path.len() - "io".len());
            self.path.push_str("fd");
            procfs::count_fds(&self.path, &mut self.dir)
        } else {
            0
        };
        let ns_per_tick = self.ns_per_tick;
        let p = self.procs.get_mut(&pid).expect("inserted above");
        let before = p.last;
        now = now.max(p.last);
        // Rates over the walk: a process born since the last walk used all
        // its CPU and I/O within it; one seen at the first walk has no rate.
        let d = now.minus(before);
        match elapsed {
            Some((secs, last_boot)) if secs > 0.0 => {
                let born_since = start * ns_per_tick >= last_boot;
                if !is_new || born_since {
                    p.cpu_rate = (d.user + d.system) as f64 / secs;
                    p.read_rate = d.read as f64 / secs;
                    p.write_rate = d.write as f64 / secs;
                }
            }
            _ => {}
        }
        p.seen = pass;
        p.comm = comm;
        p.last = now;
        p.kthread = kthread;
        (p.uid, p.rss, p.vsize, p.swap, p.threads, p.fds) = (uid, rss, vsize, swap, threads, fds);
    }

    /// Sums the members of each group into its series; forgets groups that
    /// have had no members for `forget_after`.
    pub fn publish(&mut self, now: Instant) {
        for g in self.groups.values_mut() {
            g.members = Default::default();
        }
        for p in self.procs.values().filter(|p| !p.exited) {
            let Some(g) = p.group.as_deref().and_then(|g| self.groups.get_mut(g)) else {
                continue;
            };
            let m = &mut g.members;
            m.procs += 1;
            m.threads += p.threads;
            m.fds += p.fds;
            m.rss += p.rss;
            m.vsize += p.vsize;
            m.swap += p.swap;
            m.counted.add(p.last.minus(p.offset));
        }
        let forget = self.settings.forget_after;
        self.groups.retain(|_, g| {
            if g.members.procs > 0 {
                g.empty_since = None;
            } else if now.duration_since(*g.empty_since.get_or_insert(now)) >= forget {
                return false;
            }
            g.publish();
            true
        });
    }

    /// Kernel threads are tracked (for /top) but never grouped unless
    /// `kernel_threads`; exposed for tests.
    #[cfg(test)]
    fn group_of(&self, pid: u32) -> Option<&str> {
        self.procs.get(&pid).and_then(|p| p.group.as_deref())
    }
}

#[cfg(test)]
mod tests;
