//! Applying a credential change to every thread of the process: a
//! real-time signal to each thread, whose handler makes the raw syscalls
//! (credentials are per thread in Linux); then every thread's
//! /proc/self/task/TID/status is checked against the target, and threads
//! that do not match (started meanwhile by one that had not dropped yet)
//! are signalled again.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::bit;
use super::status::{read_status, Status};

/// What each thread does (read by the signal handler).
#[derive(Clone, Copy)]
pub(super) struct Target {
    pub(super) keep: u64,
    /// Held until the last phase: `keep` plus what the drop itself needs.
    pub(super) hold: u64,
    pub(super) last_cap: u32,
    pub(super) bset: bool,
    /// The last phase: down to `keep`, no_new_privs, no keepcaps.
    pub(super) last: bool,
}

/// What every thread's status must show after a phase.
pub(super) struct Expect {
    /// CapEff and CapPrm.
    pub(super) cap: u64,
    pub(super) bnd: u64,
    pub(super) nnp: bool,
    /// Every uid and gid (real, effective, saved, filesystem).
    pub(super) ids: Option<(u32, u32)>,
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

pub(super) fn install_handler() -> anyhow::Result<()> {
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
pub(super) fn run_phase(target: &Target, expect: &Expect) -> anyhow::Result<()> {
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

pub(super) fn tasks() -> anyhow::Result<Vec<i32>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").context("cannot list /proc/self/task")? {
        if let Some(t) = e?.file_name().to_str().and_then(|n| n.parse().ok()) {
            v.push(t);
        }
    }
    Ok(v)
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
