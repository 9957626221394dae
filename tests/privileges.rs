//! `[privileges]`: after start every thread of the agent holds exactly the
//! documented capabilities (none of CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON),
//! with an empty bounding and ambient set and no_new_privs, optionally as
//! another user; and the samplers still count and read what they need.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const NOBODY: u32 = 65534;

/// What the processes sampler keeps (README, config/agent.toml).
const PROCESSES: u64 = 1 << CAP_DAC_READ_SEARCH | 1 << CAP_SYS_PTRACE;
/// What the pusher as another user keeps.
const PUSH: u64 = 1 << CAP_SETUID | 1 << CAP_SETGID | 1 << CAP_KILL;

/// One thread's credential lines.
#[derive(Debug)]
struct Creds {
    tid: String,
    fields: Vec<(String, String)>,
}

impl Creds {
    fn get(&self, key: &str) -> &str {
        &self
            .fields
            .iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no {key} in {self:?}"))
            .1
    }

    fn caps(&self, key: &str) -> u64 {
        u64::from_str_radix(self.get(key), 16).unwrap()
    }
}

/// Every thread of `pid`, from /proc/PID/task/*/status.
fn threads(pid: u32) -> Vec<Creds> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let e = e.unwrap();
        let Ok(text) = std::fs::read_to_string(e.path().join("status")) else {
            continue; // ended meanwhile
        };
        let fields = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        out.push(Creds {
            tid: e.file_name().to_string_lossy().into_owned(),
            fields,
        });
    }
    out
}

/// Asserts every thread of `pid` holds exactly `kept` (effective, permitted
/// and bounding), nothing inheritable or ambient, and no_new_privs; and
/// that the agent runs more than one thread (samplers' own threads).
fn assert_dropped(pid: u32, kept: u64) {
    let all = threads(pid);
    assert!(all.len() > 1, "the agent runs several threads: {all:?}");
    for t in &all {
        for key in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(
                t.caps(key),
                kept,
                "thread {} {key} {:x}, expected {kept:x}",
                t.tid,
                t.caps(key)
            );
        }
        assert_eq!(t.caps("CapInh"), 0, "thread {}", t.tid);
        assert_eq!(t.caps("CapAmb"), 0, "thread {}", t.tid);
        assert_eq!(t.get("NoNewPrivs"), "1", "thread {}", t.tid);
        for cap in [CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON] {
            assert_eq!(t.caps("CapEff") & 1 << cap, 0, "thread {} cap {cap}", t.tid);
        }
    }
}

fn uids(pid: u32) -> Vec<String> {
    threads(pid)
        .iter()
        .map(|t| t.get("Uid").to_string())
        .collect()
}

/// The processes sampler at a 1 s interval, and `edit`.
fn processes(edit: impl Fn(Config) -> Config) -> impl Fn(Config) -> Config {
    move |c: Config| edit(c.set("samplers.processes.interval", "1s"))
}

/// A shell named `name` (its comm, so its group), run as `uid`, that writes
/// 8 MiB to a file with its builtin printf (so the I/O is its own) and
/// then waits. Its /proc/PID/io is 0400 and behind a ptrace access check.
fn writer(dir: &Path, name: &str, uid: u32) -> Child {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let link = dir.join(name);
    std::os::unix::fs::symlink("/bin/sh", &link).unwrap();
    Command::new(&link)
        .arg("-c")
        .arg("i=0; while [ $i -lt 2048 ]; do printf '%4096s' x >> out; i=$((i+1)); done; sleep 60")
        .current_dir(dir)
        .uid(uid)
        .gid(uid)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the group `name` shows the writer's I/O and fds.
fn assert_reads_other_users(agent: &Agent, name: &str) {
    let group = format!("groupname=\"{name}\"");
    let (written, fds) = wait_for(
        "the writer's I/O in its group",
        Duration::from_secs(20),
        || {
            let text = scrape(agent);
            let w = sample(&text, "namedprocess_namegroup_write_bytes_total", &[&group])?;
            let f = sample(&text, "namedprocess_namegroup_open_filedesc", &[&group])?;
            (w >= 8.0 * 1024.0 * 1024.0).then_some((w, f))
        },
    );
    assert!(written < 64.0 * 1024.0 * 1024.0, "{written}");
    assert!(fds >= 3.0, "stdin, stdout, stderr at least: {fds}");
}

#[test]
fn only_the_documented_capabilities_are_kept_and_processes_are_still_read() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with_config(&["processes", "syscall"], processes(|c| c));
    let pid = agent.child.id();
    scrape(&agent);
    assert_dropped(pid, PROCESSES);
    assert!(
        uids(pid).iter().all(|u| u == "0\t0\t0\t0"),
        "{:?}",
        uids(pid)
    );

    // Another user's process: its I/O needs the kept capabilities.
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path(), "sondeprivw", NOBODY);
    assert_reads_other_users(&agent, "sondeprivw");
    let _ = w.kill();
    let _ = w.wait();
}

#[test]
fn without_the_processes_sampler_nothing_is_kept_and_bpf_keeps_counting() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with(&["syscall"]);
    let before = scrape(&agent);
    assert_dropped(agent.child.id(), 0);
    // The syscall program's maps are read through the mmap made at start.
    const N: u64 = 200_000;
    getppid_calls(N);
    let after = scrape(&agent);
    let d = total(&after, "syscalls_total", &["op=\"query\""])
        - total(&before, "syscalls_total", &["op=\"query\""]);
    assert!(d >= N as f64, "syscalls_total{{op=query}} moved {d}");
}

#[test]
fn as_nobody_every_thread_switches_and_samplers_still_work() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with_config(
        &["processes", "syscall", "tcp", "cgroup", "filesystem"],
        processes(|c| c.set("privileges.user", "nobody")),
    );
    let pid = agent.child.id();
    let text = scrape(&agent);
    assert_dropped(pid, PROCESSES);
    let want = format!("{NOBODY}\t{NOBODY}\t{NOBODY}\t{NOBODY}");
    assert!(uids(pid).iter().all(|u| *u == want), "{:?}", uids(pid));
    for s in ["processes", "syscall", "tcp", "cgroup", "filesystem"] {
        assert_eq!(
            sample(&text, "sonde_sampler_up", &[&format!("sampler=\"{s}\"")]),
            Some(1.0),
            "{s} refreshes as nobody"
        );
    }
    // A root process, read by an agent running as nobody.
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path(), "sondeprivr", 0);
    assert_reads_other_users(&agent, "sondeprivr");
    let _ = w.kill();
    let _ = w.wait();
}

#[test]
fn drop_false_keeps_everything() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with_config(&["syscall"], |c| c.set("privileges.drop", false));
    // What this test (root) holds, as the agent inherited it.
    let full = threads(std::process::id())[0].caps("CapEff");
    assert_ne!(full & 1 << CAP_SYS_ADMIN, 0, "the test runs as root");
    for t in threads(agent.child.id()) {
        assert_eq!(t.caps("CapEff"), full, "thread {}", t.tid);
        assert_eq!(t.get("NoNewPrivs"), "0", "thread {}", t.tid);
    }
}

/// The pusher as another user than the agent's: CAP_SETUID, CAP_SETGID and
/// CAP_KILL are kept to start and stop it; as the agent's own user, not.
#[test]
fn the_pusher_keeps_what_it_needs_only_when_it_runs_as_another_user() {
    if !bpf_or_skip() {
        return;
    }
    let server = TestServer::start(|_, _| (200, vec![], vec![]));
    for agent_user in ["", "nobody"] {
        let work = tempfile::tempdir().unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let push = work.path().join("push.toml");
        let port = free_port();
        std::fs::write(
            &push,
            format!(
                "[source]\nurl = \"http://127.0.0.1:{port}\"\ninterval = \"1s\"\n[spool]\npath = \"{}\"\n[listen]\naddress = \"127.0.0.1:0\"\n[[sinks]]\nkind = \"http\"\nurl = \"{}\"\n",
                work.path().join("spool").display(),
                server.url("/in")
            ),
        )
        .unwrap();
        let push = push.display().to_string();
        // Not `agent_with_config`: its "listening on" may be the pusher's.
        let dir = tempfile::tempdir().unwrap();
        let config = only_samplers_config(dir.path(), &["syscall"], |c| {
            c.set("listen.address", format!("127.0.0.1:{port}"))
                .set("push.enabled", true)
                .set("push.config", &push)
                .set("push.user", "nobody")
                .set("privileges.user", agent_user)
        });
        let agent = Agent::spawn(&[config.to_str().unwrap()], dir, "agent");
        let pid = agent.child.id();
        let posted = server.requests("/in").len();
        assert_dropped(pid, if agent_user.is_empty() { PUSH } else { 0 });
        // The pusher runs as nobody, with no supplementary groups of the
        // agent's and no capabilities.
        let child = wait_for("the pusher child", Duration::from_secs(10), || {
            // The supervisor thread's child.
            threads(pid).iter().find_map(|t| {
                let list =
                    std::fs::read_to_string(format!("/proc/{pid}/task/{}/children", t.tid)).ok()?;
                let c: u32 = list.split_whitespace().next()?.parse().ok()?;
                let status = std::fs::read_to_string(format!("/proc/{c}/status")).ok()?;
                status.contains("Name:\tsonde").then_some(status)
            })
        });
        let line = |k: &str| {
            child
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(
            line("Uid:"),
            format!("{NOBODY}\t{NOBODY}\t{NOBODY}\t{NOBODY}")
        );
        assert!(
            line("Groups:").is_empty() || line("Groups:") == NOBODY.to_string(),
            "{child}"
        );
        assert_eq!(line("CapEff:"), "0000000000000000");
        wait_for("posts from the pusher", Duration::from_secs(10), || {
            (server.requests("/in").len() > posted).then_some(())
        });
        // Stopped with the agent: the agent may signal it.
        // SAFETY: signalling the agent this test started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let mut agent = agent;
        let status = agent.child.wait().unwrap();
        assert!(status.success(), "agent exit {status}");
    }
}

#[test]
fn an_unknown_user_is_a_located_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let p = path.to_str().unwrap();
    std::fs::write(&path, "[privileges]\nuser = \"no-such-sonde-user\"\n").unwrap();
    let out = Command::new(BIN).args(["check", p]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{p}:2: key `privileges.user`: no such user `no-such-sonde-user`"
        )),
        "{stderr}"
    );
}
