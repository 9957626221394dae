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
//! CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN are never kept (they let the
//! holder read kernel memory): a sampler that needs a BPF load after the
//! drop cannot start, and says to restart the agent.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

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

/// What a sampler's refresh needs after the drop, beyond what every
/// process has. Samplers not listed need nothing: procfs and sysfs files
/// they read are world-readable, BPF maps are read through the mmap or the
/// fds opened at start (no capability since Linux 6.5), program stats come
/// from bpf_prog_get_info_by_fd on our own fds (no capability), and
/// iterators are created from links made at start (no capability).
pub fn needs(sampler: &str) -> u64 {
    match sampler {
        // /proc/PID/io (0400, and a ptrace access check) and /proc/PID/exe
        // (ptrace access check) of other users' processes; the fallback
        // count of /proc/PID/fd (0500) before Linux 6.2.
        "processes" => bit(CAP_SYS_PTRACE) | bit(CAP_DAC_READ_SEARCH),
        // statvfs of mount points below directories only their owner may
        // search (/run/user/UID/..., /root/...).
        "filesystem" => bit(CAP_DAC_READ_SEARCH),
        _ => 0,
    }
}

/// What the push supervisor needs to start `sonde push` as another user
/// (setgroups, setresgid, setresuid in the child) and to stop it (SIGTERM
/// to another uid).
pub const PUSH_AS_OTHER_USER: u64 = bit(CAP_SETUID) | bit(CAP_SETGID) | bit(CAP_KILL);

/// The user to switch to (`privileges.user`, resolved at config load).
#[derive(Debug, Clone)]
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

/// What each thread does (read by the signal handler).
#[derive(Clone, Copy)]
struct Target {
    keep: u64,
    /// Held until the last phase: `keep` plus what the drop itself needs.
    hold: u64,
    last_cap: u32,
    bset: bool,
    /// The last phase: down to `keep`, no_new_privs, no keepcaps.
    last: bool,
}

/// What every thread's status must show after a phase.
struct Expect {
    /// CapEff and CapPrm.
    cap: u64,
    bnd: u64,
    nnp: bool,
    /// Every uid and gid (real, effective, saved, filesystem).
    ids: Option<(u32, u32)>,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static T_KEEP: AtomicU64 = AtomicU64::new(0);
static T_HOLD: AtomicU64 = AtomicU64::new(0);
static T_LAST_CAP: AtomicU32 = AtomicU32::new(0);
static T_BSET: AtomicBool = AtomicBool::new(false);
static T_LAST: AtomicBool = AtomicBool::new(false);
/// Signalled threads that have not run the handler yet.
static PENDING: AtomicUsize = AtomicUsize::new(0);
/// The first errno a thread met (0: none).
static FAILED: AtomicI32 = AtomicI32::new(0);

fn signal() -> libc::c_int {
    // glibc keeps SIGRTMIN and SIGRTMIN+1 for itself (SIGRTMIN() is above them).
    libc::SIGRTMIN() + 4
}

fn install_handler() -> anyhow::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler only makes
    // async-signal-safe calls (raw syscalls, atomics). It stays installed
    // (disarmed) so a late signal never meets the default action, which
    // for a real-time signal would end the process.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(signal(), &sa, std::ptr::null_mut()) != 0 {
            bail!(
                "cannot install the privilege-drop signal handler: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if !ARMED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: errno is thread-local; the handler restores what it found.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: raw syscalls on the calling thread's own credentials.
    let err = unsafe { apply() };
    if err != 0 {
        let _ = FAILED.compare_exchange(0, err, Ordering::AcqRel, Ordering::Acquire);
    }
    // Saturating: a handler of an earlier round may arrive late.
    let _ = PENDING.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// capset(2) on the calling thread: effective = permitted = `caps`, no
/// inheritable. Returns 0 or the errno.
unsafe fn capset(caps: u64) -> i32 {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: caps as u32,
            permitted: caps as u32,
            inheritable: 0,
        },
        CapData {
            effective: (caps >> 32) as u32,
            permitted: (caps >> 32) as u32,
            inheritable: 0,
        },
    ];
    check(libc::syscall(
        libc::SYS_capset,
        &mut header as *mut CapHeader,
        data.as_ptr(),
    ))
}

unsafe fn prctl(op: libc::c_int, a: libc::c_ulong) -> libc::c_long {
    libc::syscall(
        libc::SYS_prctl,
        op,
        a,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
    )
}

unsafe fn check(ret: libc::c_long) -> i32 {
    if ret < 0 {
        *libc::__errno_location()
    } else {
        0
    }
}

/// One thread's part of the current phase: async-signal-safe (raw
/// syscalls only). Returns 0 or the first errno.
unsafe fn apply() -> i32 {
    let keep = T_KEEP.load(Ordering::Acquire);
    let hold = T_HOLD.load(Ordering::Acquire);
    // CAP_SETPCAP effective for the bounding-set drop; in the last phase
    // after a user switch this also restores the effective set.
    let e = capset(hold);
    if e != 0 {
        return e;
    }
    if T_BSET.load(Ordering::Acquire) {
        for cap in 0..=T_LAST_CAP.load(Ordering::Acquire) {
            if keep & bit(cap) == 0 && prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong) == 1 {
                let e = check(prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong));
                if e != 0 {
                    return e;
                }
            }
        }
    }
    let e = check(libc::syscall(
        libc::SYS_prctl,
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
        0 as libc::c_ulong,
    ));
    if e != 0 {
        return e;
    }
    if !T_LAST.load(Ordering::Acquire) {
        // Keep the permitted set through the coming uid change.
        return check(prctl(libc::PR_SET_KEEPCAPS, 1));
    }
    let e = capset(keep);
    if e != 0 {
        return e;
    }
    let e = check(prctl(libc::PR_SET_NO_NEW_PRIVS, 1));
    if e != 0 {
        return e;
    }
    check(prctl(libc::PR_SET_KEEPCAPS, 0))
}

/// Runs `target` on every thread until every thread's status shows
/// `expect`.
fn run_phase(target: &Target, expect: &Expect) -> anyhow::Result<()> {
    T_KEEP.store(target.keep, Ordering::Release);
    T_HOLD.store(target.hold, Ordering::Release);
    T_LAST_CAP.store(target.last_cap, Ordering::Release);
    T_BSET.store(target.bset, Ordering::Release);
    T_LAST.store(target.last, Ordering::Release);
    ARMED.store(true, Ordering::Release);
    let result = (|| {
        let mut todo = tasks()?;
        for _ in 0..20 {
            broadcast(&todo)?;
            // Threads started meanwhile by a thread that had not dropped
            // yet hold what it held: find them and go again.
            let wrong = mismatched(expect)?;
            if wrong.is_empty() {
                return Ok(());
            }
            todo = wrong.iter().map(|(t, _)| *t).collect();
        }
        let Some((tid, s)) = mismatched(expect)?.into_iter().next() else {
            return Ok(());
        };
        bail!(
            "thread {tid} did not drop its privileges: CapEff {:016x} CapPrm {:016x} CapBnd {:016x} \
             NoNewPrivs {} (expected CapEff = CapPrm {:016x}, CapBnd {:016x})",
            s.eff,
            s.prm,
            s.bnd,
            s.nnp as u8,
            expect.cap,
            expect.bnd
        )
    })();
    ARMED.store(false, Ordering::Release);
    result
}

/// Signals every thread in `tids` (the calling one applies the target
/// itself) and waits for their handlers.
fn broadcast(tids: &[i32]) -> anyhow::Result<()> {
    FAILED.store(0, Ordering::Release);
    PENDING.store(0, Ordering::Release);
    // SAFETY: getpid and gettid cannot fail.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    for &tid in tids.iter().filter(|&&t| t != me) {
        PENDING.fetch_add(1, Ordering::AcqRel);
        // SAFETY: signals a thread of this process; the handler is installed.
        if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) } != 0 {
            // Ended meanwhile.
            let _ = PENDING.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
        }
    }
    if tids.contains(&me) {
        // SAFETY: raw syscalls on this thread's own credentials.
        let e = unsafe { apply() };
        if e != 0 {
            let _ = FAILED.compare_exchange(0, e, Ordering::AcqRel, Ordering::Acquire);
        }
    }
    // A thread that ends before its handler runs never answers: the
    // status check after this decides.
    let deadline = Instant::now() + Duration::from_secs(2);
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    match FAILED.load(Ordering::Acquire) {
        0 => Ok(()),
        e => bail!(
            "a thread could not drop its privileges: {}",
            std::io::Error::from_raw_os_error(e)
        ),
    }
}

/// The threads whose status does not show `expect` (ended ones are skipped).
fn mismatched(expect: &Expect) -> anyhow::Result<Vec<(i32, Status)>> {
    Ok(tasks()?
        .into_iter()
        .filter_map(|t| {
            read_status(&format!("/proc/self/task/{t}/status"))
                .ok()
                .filter(|s| !expect.matches(s))
                .map(|s| (t, s))
        })
        .collect())
}

fn tasks() -> anyhow::Result<Vec<i32>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")? {
        if let Some(t) = e?.file_name().to_str().and_then(|n| n.parse().ok()) {
            v.push(t);
        }
    }
    Ok(v)
}

/// The credential lines of a /proc status file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Status {
    pub eff: u64,
    pub prm: u64,
    pub inh: u64,
    pub bnd: u64,
    pub amb: u64,
    pub nnp: bool,
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
}

impl Expect {
    fn matches(&self, s: &Status) -> bool {
        s.eff == self.cap
            && s.prm == self.cap
            && s.inh == 0
            && s.amb == 0
            && s.bnd == self.bnd
            && s.nnp == self.nnp
            && self
                .ids
                .is_none_or(|(u, g)| s.uid == [u; 4] && s.gid == [g; 4])
    }
}

pub fn read_status(path: &str) -> anyhow::Result<Status> {
    Ok(parse_status(&std::fs::read_to_string(path)?))
}

pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    let hex = |v: &str| u64::from_str_radix(v.trim(), 16).unwrap_or(0);
    let ids = |v: &str| {
        let mut out = [0u32; 4];
        for (o, f) in out.iter_mut().zip(v.split_whitespace()) {
            *o = f.parse().unwrap_or(0);
        }
        out
    };
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        match k {
            "CapEff" => s.eff = hex(v),
            "CapPrm" => s.prm = hex(v),
            "CapInh" => s.inh = hex(v),
            "CapBnd" => s.bnd = hex(v),
            "CapAmb" => s.amb = hex(v),
            "NoNewPrivs" => s.nnp = v.trim() == "1",
            "Uid" => s.uid = ids(v),
            "Gid" => s.gid = ids(v),
            _ => {}
        }
    }
    s
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
            names(needs("processes")),
            "CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE"
        );
        assert_eq!(names(bit(CAP_BPF)), "CAP_BPF");
        assert_eq!(NAMES[CAP_SYS_ADMIN as usize], "CAP_SYS_ADMIN");
        assert_eq!(NAMES[CAP_PERFMON as usize], "CAP_PERFMON");
        assert_eq!(NAMES[CAP_SETPCAP as usize], "CAP_SETPCAP");
    }
}
