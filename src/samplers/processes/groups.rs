//! Which group a process belongs to (matchers, first match wins), and each
//! group's series.

use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use super::{CPU, DESC_FDS, MEMORY, NUM_PROCS, READ_BYTES, THREADS, WRITE_BYTES};
use crate::registry::Series;
use crate::samplers::common::glob;

/// `[[samplers.processes.groups]]`: a group name and the matchers a
/// process must pass. Every matcher given must match (an empty list is not
/// checked); each is a list of globs (`*` matches any run of characters),
/// any of which may match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's name; `{comm}` is replaced by the process's command name.
    pub name: String,
    /// Command names (`comm`, 15 characters at most), e.g. `["nginx"]`.
    #[serde(default)]
    pub comm: Vec<String>,
    /// Executable paths (the /proc/PID/exe link), e.g. `["/usr/sbin/*"]`.
    #[serde(default)]
    pub exe: Vec<String>,
    /// The command line, arguments joined by spaces, matched whole:
    /// `["*java*kafka.Kafka*"]`.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

impl GroupConfig {
    pub fn has_matcher(&self) -> bool {
        !(self.comm.is_empty() && self.exe.is_empty() && self.cmdline.is_empty())
    }
}

/// What a process is matched on; `exe` and `cmdline` are read only when a
/// matcher asks for them, and once.
pub struct Facts<'a> {
    pub comm: &'a str,
    pub exe: &'a mut dyn FnMut() -> Option<String>,
    pub cmdline: &'a mut dyn FnMut() -> Option<String>,
}

pub struct Classifier {
    groups: Vec<GroupConfig>,
}

fn any(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| glob(p, value))
}

impl Classifier {
    /// No groups configured: one group per command name.
    pub fn new(groups: &[GroupConfig]) -> Classifier {
        let groups = if groups.is_empty() {
            vec![GroupConfig {
                name: "{comm}".into(),
                comm: vec!["*".into()],
                exe: Vec::new(),
                cmdline: Vec::new(),
            }]
        } else {
            groups.to_vec()
        };
        Classifier { groups }
    }

    /// The name of the first group the process matches.
    pub fn classify(&self, facts: Facts<'_>) -> Option<String> {
        let (mut exe, mut cmdline): (Option<Option<String>>, Option<Option<String>>) = (None, None);
        for g in &self.groups {
            if !g.comm.is_empty() && !any(&g.comm, facts.comm) {
                continue;
            }
            if !g.exe.is_empty() {
                let e = exe.get_or_insert_with(&mut *facts.exe);
                if !e.as_deref().is_some_and(|e| any(&g.exe, e)) {
                    continue;
                }
            }
            if !g.cmdline.is_empty() {
                let c = cmdline.get_or_insert_with(&mut *facts.cmdline);
                if !c.as_deref().is_some_and(|c| any(&g.cmdline, c)) {
                    continue;
                }
            }
            return Some(g.name.replace("{comm}", facts.comm));
        }
        None
    }

    /// The group of a process known only by its command name (one that
    /// lived and ended between two walks): groups that also need the
    /// executable or the command line cannot be decided and are passed over.
    pub fn classify_comm(&self, comm: &str) -> Option<String> {
        self.groups
            .iter()
            .find(|g| g.exe.is_empty() && g.cmdline.is_empty() && any(&g.comm, comm))
            .map(|g| g.name.replace("{comm}", comm))
    }

    /// Whether group names depend on the command name (then a process
    /// whose name changes, e.g. by exec, is matched again).
    pub fn uses_comm(&self) -> bool {
        self.groups
            .iter()
            .any(|g| !g.comm.is_empty() || g.name.contains("{comm}"))
    }
}

/// Monotonic per-process amounts: CPU in ns, I/O in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub user: u64,
    pub system: u64,
    pub read: u64,
    pub write: u64,
}

impl Totals {
    /// The later of two readings of one process (`o` seen earlier): each
    /// amount never below `o`'s, and CPU taken as a whole. The exit record
    /// and /proc split the same runtime into user and system differently,
    /// so a per-mode maximum would count more than the process ran: the
    /// CPU beyond `o`'s total is added in `self`'s user/system ratio.
    pub fn max(self, o: Totals) -> Totals {
        let (total, seen) = (self.user + self.system, o.user + o.system);
        let more = total.saturating_sub(seen);
        let user_more = if total == 0 {
            0
        } else {
            (more as u128 * self.user as u128 / total as u128) as u64
        };
        Totals {
            user: o.user + user_more,
            system: o.system + (more - user_more),
            read: self.read.max(o.read),
            write: self.write.max(o.write),
        }
    }

    pub fn minus(self, o: Totals) -> Totals {
        Totals {
            user: self.user.saturating_sub(o.user),
            system: self.system.saturating_sub(o.system),
            read: self.read.saturating_sub(o.read),
            write: self.write.saturating_sub(o.write),
        }
    }

    pub fn add(&mut self, o: Totals) {
        self.user += o.user;
        self.system += o.system;
        self.read += o.read;
        self.write += o.write;
    }
}

/// What the live members of a group add up to in one walk.
#[derive(Debug, Default, Clone, Copy)]
pub struct Members {
    pub procs: u64,
    pub threads: u64,
    pub fds: u64,
    pub rss: u64,
    pub vsize: u64,
    pub swap: u64,
    /// Their counters since they joined the group.
    pub counted: Totals,
}

pub struct Group {
    /// What members that left (ended, or moved to another group) counted.
    pub base: Totals,
    pub members: Members,
    /// The counters last published: they never go down.
    pub published: Totals,
    /// Since when the group has had no members.
    pub empty_since: Option<Instant>,
    num_procs: Arc<Series>,
    threads: Arc<Series>,
    fds: Arc<Series>,
    user: Arc<Series>,
    system: Arc<Series>,
    resident: Arc<Series>,
    virt: Arc<Series>,
    swapped: Arc<Series>,
    read: Arc<Series>,
    write: Arc<Series>,
}

impl Group {
    pub fn new(name: &str) -> Group {
        Group {
            base: Totals::default(),
            members: Members::default(),
            published: Totals::default(),
            empty_since: None,
            num_procs: NUM_PROCS.series(&[name]),
            threads: THREADS.series(&[name]),
            fds: DESC_FDS.series(&[name]),
            user: CPU.series(&[name, "user"]),
            system: CPU.series(&[name, "system"]),
            resident: MEMORY.series(&[name, "resident"]),
            virt: MEMORY.series(&[name, "virtual"]),
            swapped: MEMORY.series(&[name, "swapped"]),
            read: READ_BYTES.series(&[name]),
            write: WRITE_BYTES.series(&[name]),
        }
    }

    /// Stores the walk's sums in the series.
    pub fn publish(&mut self) {
        let m = &self.members;
        let mut total = self.base;
        total.add(m.counted);
        self.published = self.published.max(total);
        let t = self.published;
        self.num_procs.set_gauge(m.procs as i64);
        self.threads.set_gauge(m.threads as i64);
        self.fds.set_gauge(m.fds as i64);
        self.resident.set_gauge(m.rss as i64);
        self.virt.set_gauge(m.vsize as i64);
        self.swapped.set_gauge(m.swap as i64);
        self.user.set_counter(t.user);
        self.system.set_counter(t.system);
        self.read.set_counter(t.read);
        self.write.set_counter(t.write);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn later_readings_keep_cpu_whole_and_monotonic() {
        use super::Totals;
        let t = |user, system| Totals {
            user,
            system,
            read: 0,
            write: 0,
        };
        // /proc saw 60/40; the exit record splits 100 as 70/20 + 10 more.
        let m = t(70, 40).max(t(60, 40));
        assert_eq!(m.user + m.system, 110);
        assert!(m.user >= 60 && m.system >= 40);
        // A reading with less CPU never lowers it.
        assert_eq!(t(10, 10).max(t(60, 40)), t(60, 40));
    }

    use super::*;

    fn group(name: &str, comm: &[&str], exe: &[&str], cmdline: &[&str]) -> GroupConfig {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        GroupConfig {
            name: name.into(),
            comm: v(comm),
            exe: v(exe),
            cmdline: v(cmdline),
        }
    }

    fn classify(c: &Classifier, comm: &str, exe: &str, cmdline: &str) -> Option<String> {
        let (mut e, mut l) = (|| Some(exe.to_string()), || Some(cmdline.to_string()));
        c.classify(Facts {
            comm,
            exe: &mut e,
            cmdline: &mut l,
        })
    }

    #[test]
    fn first_match_wins_and_templates() {
        let c = Classifier::new(&[
            group("web", &["nginx"], &[], &[]),
            group("kafka", &[], &[], &["*java*kafka.Kafka*"]),
            group("sbin:{comm}", &[], &["/usr/sbin/*"], &[]),
            group("all-{comm}", &["*"], &[], &[]),
        ]);
        assert_eq!(
            classify(&c, "nginx", "/usr/sbin/nginx", "nginx: worker").as_deref(),
            Some("web")
        );
        assert_eq!(
            classify(
                &c,
                "java",
                "/usr/bin/java",
                "/usr/bin/java -Xmx1g kafka.Kafka config"
            )
            .as_deref(),
            Some("kafka")
        );
        assert_eq!(
            classify(&c, "sshd", "/usr/sbin/sshd", "sshd").as_deref(),
            Some("sbin:sshd")
        );
        assert_eq!(
            classify(&c, "bash", "/bin/bash", "bash").as_deref(),
            Some("all-bash")
        );
        // Known only by comm: the exe and cmdline groups are passed over.
        assert_eq!(c.classify_comm("sshd").as_deref(), Some("all-sshd"));
        assert_eq!(c.classify_comm("nginx").as_deref(), Some("web"));
    }

    #[test]
    fn default_is_one_group_per_comm_and_no_match_is_none() {
        let c = Classifier::new(&[]);
        assert_eq!(classify(&c, "cron", "", "").as_deref(), Some("cron"));
        assert!(c.uses_comm());
        let c = Classifier::new(&[group("db", &[], &["/usr/lib/postgresql/*"], &[])]);
        assert_eq!(classify(&c, "postgres", "/usr/bin/postgres", ""), None);
        assert_eq!(c.classify_comm("postgres"), None);
        assert!(!c.uses_comm());
    }

    #[test]
    fn every_matcher_given_must_match() {
        let c = Classifier::new(&[group("x", &["python3"], &[], &["*serve*"])]);
        assert_eq!(
            classify(&c, "python3", "", "python3 serve.py").as_deref(),
            Some("x")
        );
        assert_eq!(classify(&c, "python3", "", "python3 batch.py"), None);
    }
}
