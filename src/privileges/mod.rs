//! Privilege drop after start (`[privileges]` in the agent's config): once
//! every BPF program is loaded and attached, the agent keeps only the
//! capabilities its refreshes need, empties the bounding and ambient sets,
//! sets no_new_privs and may switch to another user.
//!
//! Linux credentials are per thread, and samplers start threads of their
//! own before the drop, so the drop runs on every thread of the process
//! (as libpsx and Go's AllThreadsSyscall do): a real-time signal to each
//! thread, whose handler makes the raw syscalls; then every thread's
//! /proc/self/task/TID/status is checked against the target, and threads
//! that do not match (started meanwhile by one that had not dropped yet)
//! are signalled again.
//!
//! What is kept is what the running samplers declare they need
//! (`SamplerSpec::capabilities`). CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN
//! are never kept (they let the holder read kernel memory): a sampler that
//! needs a BPF load after the drop cannot start, and says to restart the
//! agent.

mod status;
mod threads;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub use status::{parse_status, read_status, Status};
use threads::{install_handler, run_phase, tasks, Expect, Target};

pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_KILL: u32 = 5;
pub const CAP_SETGID: u32 = 6;
pub const CAP_SETUID: u32 = 7;
pub const CAP_SETPCAP: u32 = 8;
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Capability names by number (linux/capability.h), for the log.
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

pub const fn bit(cap: u32) -> u64 {
    1 << cap
}

/// What the push supervisor needs to start `sonde push` as another user
/// (setgroups, setresgid, setresuid in the child) and to stop it (SIGTERM
/// to another uid).
pub const PUSH_AS_OTHER_USER: u64 = bit(CAP_SETUID) | bit(CAP_SETGID) | bit(CAP_KILL);

/// The user to switch to (`privileges.user`, resolved at config load).
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks a user up in the password database: (uid, primary gid).
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; the
    // fields are copied out before any other call that could reuse it.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: `pw` is non-null and points at getpwnam's static record.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

static DROPPED: AtomicBool = AtomicBool::new(false);
static KEPT: AtomicU64 = AtomicU64::new(0);

/// Whether this process has dropped its privileges (process-wide).
pub fn dropped() -> bool {
    DROPPED.load(Ordering::Acquire)
}

/// The capabilities kept by the drop (meaningful once `dropped()`).
pub fn kept() -> u64 {
    KEPT.load(Ordering::Acquire)
}

/// "CAP_A, CAP_B" (or "none").
pub fn names(mask: u64) -> String {
    let v: Vec<String> = (0..64u32)
        .filter(|c| mask & bit(*c) != 0)
        .map(|c| {
            NAMES
                .get(c as usize)
                .map_or_else(|| format!("cap{c}"), |n| n.to_string())
        })
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What the drop did, for the log.
#[derive(Debug)]
pub struct Dropped {
    pub kept: u64,
    /// Capabilities asked for that the process did not have.
    pub missing: u64,
    pub user: Option<String>,
    /// Threads of the process when it was done.
    pub threads: usize,
    pub took: Duration,
}

/// Drops every capability but `keep` on every thread of the process, sets
/// no_new_privs and, with `user`, switches to that user and its groups.
pub fn drop_all(keep: u64, user: Option<&Account>) -> anyhow::Result<Dropped> {
    let start = Instant::now();
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .context("cannot read /proc/sys/kernel/cap_last_cap")?
        .trim()
        .parse()
        .context("cannot parse /proc/sys/kernel/cap_last_cap")?;
    let me =
        read_status("/proc/thread-self/status").context("cannot read /proc/thread-self/status")?;
    // Kept capabilities the process never had cannot be kept.
    let missing = keep & !me.prm;
    let keep = keep & me.prm;
    // Without CAP_SETPCAP the bounding set stays as it is (a process
    // without capabilities and with no_new_privs gains none on exec).
    let bset = me.prm & bit(CAP_SETPCAP) != 0;
    let mut hold = keep | (me.prm & bit(CAP_SETPCAP));
    if user.is_some() {
        let ids = bit(CAP_SETUID) | bit(CAP_SETGID);
        if me.prm & ids != ids {
            bail!(
                "cannot switch to another user (privileges.user) without CAP_SETUID and CAP_SETGID"
            );
        }
        hold |= ids;
    }
    let bnd = if bset { keep } else { me.bnd };
    install_handler()?;
    match user {
        None => run_phase(
            &Target {
                keep,
                hold,
                last_cap,
                bset,
                last: true,
            },
            &Expect {
                cap: keep,
                bnd,
                nnp: true,
                ids: None,
            },
        )?,
        Some(u) => {
            // Keep the permitted set across the uid change (keepcaps).
            let target = Target {
                keep,
                hold,
                last_cap,
                bset,
                last: false,
            };
            run_phase(
                &target,
                &Expect {
                    cap: hold,
                    bnd,
                    nnp: false,
                    ids: None,
                },
            )?;
            switch_user(u)?;
            // The uid change emptied the effective set: set it again.
            run_phase(
                &Target {
                    last: true,
                    ..target
                },
                &Expect {
                    cap: keep,
                    bnd,
                    nnp: true,
                    ids: Some((u.uid, u.gid)),
                },
            )?;
        }
    }
    KEPT.store(keep, Ordering::Release);
    DROPPED.store(true, Ordering::Release);
    Ok(Dropped {
        kept: keep,
        missing,
        user: user.map(|u| u.name.clone()),
        threads: tasks()?.len(),
        took: start.elapsed(),
    })
}

/// initgroups, setresgid, setresuid: glibc runs each on every thread.
fn switch_user(u: &Account) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(u.name.as_str())?;
    // SAFETY: plain libc calls with valid arguments; glibc applies them to
    // every thread of the process (its setxid broadcast).
    unsafe {
        if libc::initgroups(name.as_ptr(), u.gid) != 0 {
            bail!(
                "cannot set the groups of user `{}`: {}",
                u.name,
                std::io::Error::last_os_error()
            );
        }
        if libc::setresgid(u.gid, u.gid, u.gid) != 0 {
            bail!(
                "cannot switch to group {}: {}",
                u.gid,
                std::io::Error::last_os_error()
            );
        }
        if libc::setresuid(u.uid, u.uid, u.uid) != 0 {
            bail!(
                "cannot switch to user `{}`: {}",
                u.name,
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let text = "Name:\tsonde\nUid:\t65534\t65534\t65534\t65534\nGid:\t0\t1\t2\t3\n\
            CapInh:\t0000000000000000\nCapPrm:\t0000000000080004\nCapEff:\t0000000000080004\n\
            CapBnd:\t0000000000080004\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        let s = parse_status(text);
        assert_eq!(s.eff, bit(CAP_SYS_PTRACE) | bit(CAP_DAC_READ_SEARCH));
        assert_eq!(s.prm, s.eff);
        assert_eq!(s.bnd, s.eff);
        assert!(s.nnp);
        assert_eq!(s.uid, [65534; 4]);
        assert_eq!(s.gid, [0, 1, 2, 3]);
    }

    #[test]
    fn names_of_masks() {
        assert_eq!(names(0), "none");
        assert_eq!(
            names(bit(CAP_SYS_PTRACE) | bit(CAP_DAC_READ_SEARCH)),
            "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE"
        );
        assert_eq!(names(bit(CAP_BPF)), "CAP_BPF");
        assert_eq!(NAMES[CAP_SYS_ADMIN as usize], "CAP_SYS_ADMIN");
        assert_eq!(NAMES[CAP_PERFMON as usize], "CAP_PERFMON");
        assert_eq!(NAMES[CAP_SETPCAP as usize], "CAP_SETPCAP");
    }
}
