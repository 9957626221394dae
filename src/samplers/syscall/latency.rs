//! `syscall`: syscall counts and latency by operation class, measured in
//! the kernel on raw_syscalls:sys_enter/sys_exit.

use std::sync::Arc;

use linkme::distributed_slice;

use crate::agent::sampler::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::sonde::HISTOGRAM_BUCKETS;
use crate::bpf::consts::syscall::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, Histograms, Sizing};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/syscall_syscall.skel.rs"));
}
use skel::{SyscallSkel, SyscallSkelBuilder};

crate::family!(COUNT: Counter "syscalls", Count, ["op"], "syscall", "raw_syscalls:sys_enter/sys_exit",
    "Syscalls completed, by operation class.");
crate::family!(LATENCY: Histogram "syscall_latency", Nanoseconds, ["op"], "syscall", "raw_syscalls:sys_enter/sys_exit",
    "Time from syscall entry to exit, by operation class.");

/// Operation classes; the index is what the BPF table stores. Syscalls not
/// listed below are `other` (index 0, the table's zero value).
const OPS: [&str; SYSCALL_OPS] = [
    "other",
    "read",
    "write",
    "poll",
    "lock",
    "time",
    "sleep",
    "socket",
    "yield",
    "filesystem",
    "memory",
    "process",
    "query",
    "ipc",
    "timer",
    "event",
];

/// (op, syscall numbers) for this architecture.
fn classes() -> Vec<(&'static str, Vec<libc::c_long>)> {
    use libc::*;
    let mut c: Vec<(&str, Vec<c_long>)> = vec![
        (
            "read",
            vec![
                SYS_read,
                SYS_readv,
                SYS_pread64,
                SYS_preadv,
                SYS_preadv2,
                SYS_recvfrom,
                SYS_recvmsg,
                SYS_recvmmsg,
            ],
        ),
        (
            "write",
            vec![
                SYS_write,
                SYS_writev,
                SYS_pwrite64,
                SYS_pwritev,
                SYS_pwritev2,
                SYS_sendto,
                SYS_sendmsg,
                SYS_sendmmsg,
                SYS_sendfile,
                SYS_splice,
                SYS_tee,
                SYS_vmsplice,
                SYS_copy_file_range,
            ],
        ),
        (
            "poll",
            vec![
                SYS_ppoll,
                SYS_pselect6,
                SYS_epoll_pwait,
                SYS_epoll_pwait2,
                SYS_epoll_ctl,
                SYS_epoll_create1,
            ],
        ),
        ("lock", vec![SYS_futex, SYS_flock, SYS_futex_waitv]),
        (
            "time",
            vec![
                SYS_clock_gettime,
                SYS_gettimeofday,
                SYS_clock_getres,
                SYS_clock_settime,
                SYS_settimeofday,
                SYS_adjtimex,
                SYS_clock_adjtime,
            ],
        ),
        ("sleep", vec![SYS_nanosleep, SYS_clock_nanosleep]),
        (
            "socket",
            vec![
                SYS_socket,
                SYS_socketpair,
                SYS_bind,
                SYS_listen,
                SYS_accept,
                SYS_accept4,
                SYS_connect,
                SYS_shutdown,
                SYS_getsockopt,
                SYS_setsockopt,
                SYS_getsockname,
                SYS_getpeername,
            ],
        ),
        ("yield", vec![SYS_sched_yield]),
        (
            "filesystem",
            vec![
                SYS_openat,
                SYS_openat2,
                SYS_close,
                SYS_close_range,
                SYS_fstat,
                SYS_newfstatat,
                SYS_statx,
                SYS_faccessat,
                SYS_faccessat2,
                SYS_lseek,
                SYS_getdents64,
                SYS_mkdirat,
                SYS_unlinkat,
                SYS_renameat2,
                SYS_linkat,
                SYS_symlinkat,
                SYS_readlinkat,
                SYS_fchmod,
                SYS_fchmodat,
                SYS_fchown,
                SYS_fchownat,
                SYS_truncate,
                SYS_ftruncate,
                SYS_fsync,
                SYS_fdatasync,
                SYS_sync,
                SYS_syncfs,
                SYS_fcntl,
                SYS_ioctl,
                SYS_dup,
                SYS_dup3,
                SYS_statfs,
                SYS_fstatfs,
                SYS_utimensat,
                SYS_chdir,
                SYS_fchdir,
                SYS_getcwd,
                SYS_mknodat,
                SYS_fallocate,
                SYS_sync_file_range,
                SYS_getxattr,
                SYS_setxattr,
                SYS_listxattr,
                SYS_fgetxattr,
                SYS_mount,
                SYS_umount2,
            ],
        ),
        (
            "memory",
            vec![
                SYS_mmap,
                SYS_munmap,
                SYS_mprotect,
                SYS_mremap,
                SYS_madvise,
                SYS_brk,
                SYS_msync,
                SYS_mlock,
                SYS_munlock,
                SYS_mlockall,
                SYS_munlockall,
                SYS_mincore,
                SYS_membarrier,
                SYS_process_madvise,
            ],
        ),
        (
            "process",
            vec![
                SYS_clone,
                SYS_clone3,
                SYS_execve,
                SYS_execveat,
                SYS_exit,
                SYS_exit_group,
                SYS_wait4,
                SYS_waitid,
                SYS_kill,
                SYS_tgkill,
                SYS_tkill,
                SYS_prctl,
                SYS_setpgid,
                SYS_setsid,
                SYS_setuid,
                SYS_setgid,
                SYS_setresuid,
                SYS_setresgid,
                SYS_rt_sigaction,
                SYS_rt_sigprocmask,
                SYS_rt_sigreturn,
                SYS_rt_sigtimedwait,
                SYS_rt_sigsuspend,
                SYS_sigaltstack,
                SYS_set_tid_address,
                SYS_set_robust_list,
                SYS_rseq,
                SYS_pidfd_open,
                SYS_pidfd_send_signal,
                SYS_unshare,
                SYS_setns,
                SYS_capset,
                SYS_sched_setaffinity,
                SYS_sched_setscheduler,
                SYS_setpriority,
                SYS_setrlimit,
                SYS_prlimit64,
            ],
        ),
        (
            "query",
            vec![
                SYS_getpid,
                SYS_getppid,
                SYS_gettid,
                SYS_getuid,
                SYS_geteuid,
                SYS_getgid,
                SYS_getegid,
                SYS_getrusage,
                SYS_getrlimit,
                SYS_uname,
                SYS_sysinfo,
                SYS_getpriority,
                SYS_getcpu,
                SYS_sched_getaffinity,
                SYS_getrandom,
                SYS_getgroups,
                SYS_getpgid,
                SYS_getsid,
                SYS_times,
                SYS_capget,
                SYS_getresuid,
                SYS_getresgid,
                SYS_sched_getscheduler,
                SYS_sched_getparam,
            ],
        ),
        (
            "ipc",
            vec![
                SYS_pipe2,
                SYS_msgget,
                SYS_msgsnd,
                SYS_msgrcv,
                SYS_msgctl,
                SYS_semget,
                SYS_semop,
                SYS_semtimedop,
                SYS_semctl,
                SYS_shmget,
                SYS_shmat,
                SYS_shmdt,
                SYS_shmctl,
                SYS_mq_open,
                SYS_mq_timedsend,
                SYS_mq_timedreceive,
            ],
        ),
        (
            "timer",
            vec![
                SYS_timer_create,
                SYS_timer_settime,
                SYS_timer_gettime,
                SYS_timer_delete,
                SYS_timer_getoverrun,
                SYS_setitimer,
                SYS_getitimer,
                SYS_timerfd_create,
                SYS_timerfd_settime,
                SYS_timerfd_gettime,
            ],
        ),
        (
            "event",
            vec![
                SYS_eventfd2,
                SYS_signalfd4,
                SYS_inotify_init1,
                SYS_inotify_add_watch,
                SYS_inotify_rm_watch,
                SYS_fanotify_init,
                SYS_fanotify_mark,
                SYS_io_uring_enter,
                SYS_io_uring_setup,
                SYS_io_uring_register,
                SYS_io_setup,
                SYS_io_submit,
                SYS_io_getevents,
            ],
        ),
    ];
    // Legacy syscalls that only x86_64 has.
    #[cfg(target_arch = "x86_64")]
    {
        let legacy: [(&str, &[c_long]); 9] = [
            (
                "poll",
                &[SYS_poll, SYS_select, SYS_epoll_wait, SYS_epoll_create],
            ),
            ("time", &[SYS_time]),
            ("sleep", &[SYS_pause]),
            (
                "filesystem",
                &[
                    SYS_open,
                    SYS_stat,
                    SYS_lstat,
                    SYS_access,
                    SYS_getdents,
                    SYS_mkdir,
                    SYS_rmdir,
                    SYS_unlink,
                    SYS_rename,
                    SYS_link,
                    SYS_symlink,
                    SYS_readlink,
                    SYS_chmod,
                    SYS_chown,
                    SYS_lchown,
                    SYS_creat,
                    SYS_dup2,
                    SYS_mknod,
                ],
            ),
            ("process", &[SYS_fork, SYS_vfork, SYS_arch_prctl]),
            ("query", &[SYS_getpgrp]),
            ("ipc", &[SYS_pipe]),
            ("timer", &[SYS_alarm]),
            ("event", &[SYS_eventfd, SYS_signalfd, SYS_inotify_init]),
        ];
        for (op, nrs) in legacy {
            if let Some((_, v)) = c.iter_mut().find(|(o, _)| *o == op) {
                v.extend_from_slice(nrs);
            }
        }
    }
    c
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    hook: bpf::HookMode,
    disable: Vec<String>,
    /// Measure each syscall's latency (two programs and two clock reads per
    /// syscall); `false` counts syscalls only, with one program and no clock.
    latency: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hook: bpf::HookMode::Auto,
            disable: Vec::new(),
            latency: true,
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "syscall",
    validate: options::<Options>,
    init,
};

struct Syscall {
    bpf: Bpf<SyscallSkel<'static>>,
    banks: Banks,
    histograms: Histograms,
    buckets: Vec<u64>,
    count: Vec<Arc<Series>>,
    /// Empty in counts-only mode.
    latency: Vec<Arc<Series>>,
    discarded: Arc<Series>,
}

fn write_table(obj: &libbpf_rs::Object) -> anyhow::Result<()> {
    use libbpf_rs::MapCore as _;
    let map = obj
        .maps()
        .find(|m| m.name() == "syscall_ops")
        .ok_or_else(|| anyhow::anyhow!("no syscall_ops map"))?;
    for (op, nrs) in classes() {
        let idx = OPS.iter().position(|o| *o == op).expect("op listed in OPS") as u32;
        for nr in nrs {
            let nr = nr as u32;
            if (nr as usize) < SYSCALL_MAX_NR {
                map.update(
                    &nr.to_ne_bytes(),
                    &idx.to_ne_bytes(),
                    libbpf_rs::MapFlags::ANY,
                )?;
            }
        }
    }
    Ok(())
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let options: Options = ctx.options()?;
    let unused: &[&str] = if options.latency {
        &["sys_enter_count"]
    } else {
        &["sys_enter", "sys_exit"]
    };
    let bpf = bpf::load(
        "syscall",
        SyscallSkelBuilder::default,
        &BpfOptions {
            hook: options.hook,
            disable: options.disable,
        },
        unused,
        &[
            Sizing {
                map: "syscall_counters",
                per_cpu: SYSCALL_BANK,
            },
            Sizing {
                map: "syscall_latency",
                per_cpu: SYSCALL_OPS * HISTOGRAM_BUCKETS,
            },
        ],
        write_table,
    )?;
    let s = Syscall {
        banks: bpf.banks("syscall_counters", SYSCALL_BANK)?,
        histograms: bpf.histograms("syscall_latency", SYSCALL_OPS)?,
        bpf,
        buckets: Vec::new(),
        count: OPS.iter().map(|op| COUNT.series(&[op])).collect(),
        latency: if options.latency {
            OPS.iter().map(|op| LATENCY.series(&[op])).collect()
        } else {
            Vec::new()
        },
        discarded: bpf::discarded("syscall"),
    };
    Ok(Some(Box::new(s)))
}

impl Sampler for Syscall {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for op in 0..SYSCALL_OPS {
            let n = match self.latency.get(op) {
                Some(latency) => {
                    let sum = self.banks.sum(SYSCALL_SLOT_SUM + op);
                    self.histograms.store(op, latency, sum, &mut self.buckets)
                }
                // Counts-only mode.
                None => self.banks.sum(SYSCALL_SLOT_COUNT + op),
            };
            self.count[op].set_counter(n);
        }
        self.discarded
            .set_counter(self.banks.sum(SYSCALL_SLOT_DISCARDED));
        Ok(())
    }

    fn bpf(&self) -> Option<&BpfInfo> {
        Some(&self.bpf.info)
    }
}
