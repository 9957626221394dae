//! The floor of per-event cost on this machine: what one program on a
//! hook costs before it does anything useful, what its usual building
//! blocks add, and what Sonde's own hot-path programs cost on the same
//! loops. A loop that hits the hook runs with no program, then with one
//! object attached, alternating; the tables show the median added time.
//! `cargo bench --bench floor` (root); `cargo xtask bench` runs it.

use std::any::Any;
use std::time::Instant;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use sonde::bpf::consts::{scheduler, syscall};
use sonde::bpf::{BpfContext, BpfOptions};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}
mod scheduler_skel {
    include!(concat!(env!("OUT_DIR"), "/scheduler.skel.rs"));
}
mod syscall_skel {
    include!(concat!(env!("OUT_DIR"), "/syscall.skel.rs"));
}

const ROUNDS: usize = 9;
const CPU: usize = 1;

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// ns per getppid() (one sys_enter and one sys_exit).
fn getppid(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per context switch: two threads on one CPU taking turns with
/// sched_yield().
fn yield_switch(n: u64) -> f64 {
    let other = std::thread::spawn(move || {
        pin(CPU);
        for _ in 0..n {
            // SAFETY: sched_yield cannot fail.
            unsafe { libc::sched_yield() };
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: sched_yield cannot fail.
        unsafe { libc::sched_yield() };
    }
    other.join().unwrap();
    t.elapsed().as_nanos() as f64 / (2 * n) as f64
}

/// ns per round trip of a byte between two processes on one CPU, through
/// two pipes (4 syscalls, 2 wakeups, 2 context switches).
fn pingpong(n: u64) -> f64 {
    let (mut a, mut b) = ([0i32; 2], [0i32; 2]);
    // SAFETY: pipes and a child that only reads, writes and _exits.
    unsafe {
        libc::pipe(a.as_mut_ptr());
        libc::pipe(b.as_mut_ptr());
        let mut byte = 0u8;
        let p = &mut byte as *mut u8 as *mut libc::c_void;
        let pid = libc::fork();
        if pid == 0 {
            for _ in 0..n {
                libc::read(a[0], p, 1);
                libc::write(b[1], p, 1);
            }
            libc::_exit(0);
        }
        let t = Instant::now();
        for _ in 0..n {
            libc::write(a[1], p, 1);
            libc::read(b[0], p, 1);
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        for fd in a.iter().chain(&b) {
            libc::close(*fd);
        }
        ns
    }
}

struct Case {
    what: &'static str,
    progs: &'static [&'static str],
    /// Program runs per loop operation.
    runs_per_op: f64,
}

struct Loop {
    name: &'static str,
    op: fn(u64) -> f64,
    n: u64,
    cases: &'static [Case],
}

const LOOPS: &[Loop] = &[
    Loop {
        name: "raw_syscalls (getppid)",
        op: getppid,
        n: 1_000_000,
        cases: &[
            Case {
                what: "empty tp_btf program on sys_enter",
                progs: &["empty_enter"],
                runs_per_op: 1.0,
            },
            Case {
                what: "empty raw_tp program on sys_enter",
                progs: &["empty_enter_raw"],
                runs_per_op: 1.0,
            },
            Case {
                what: "empty programs on sys_enter + sys_exit",
                progs: &["empty_enter", "empty_exit"],
                runs_per_op: 1.0,
            },
            Case {
                what: "sys_enter: per-CPU counter add",
                progs: &["count_enter"],
                runs_per_op: 1.0,
            },
            Case {
                what: "sys_enter: bpf_ktime_get_ns()",
                progs: &["ktime_enter"],
                runs_per_op: 1.0,
            },
            Case {
                what: "sys_enter: task storage get (create)",
                progs: &["task_create_enter"],
                runs_per_op: 1.0,
            },
            Case {
                what: "sys_enter: task storage get (lookup)",
                progs: &["task_lookup_enter"],
                runs_per_op: 1.0,
            },
            Case {
                what: "sys_enter: task field load (tp_btf)",
                progs: &["task_field_enter"],
                runs_per_op: 1.0,
            },
        ],
    },
    Loop {
        name: "pipe ping-pong round trip (4 syscalls, 2 switches)",
        op: pingpong,
        n: 50_000,
        cases: &[
            Case {
                what: "empty program on sys_enter (per syscall)",
                progs: &["empty_enter"],
                runs_per_op: 4.0,
            },
            Case {
                what: "empty program on sched_switch (per switch)",
                progs: &["empty_switch"],
                runs_per_op: 2.0,
            },
            Case {
                what: "empty programs on sys_enter and sched_switch (per round trip)",
                progs: &["empty_enter", "empty_switch"],
                runs_per_op: 1.0,
            },
        ],
    },
    Loop {
        name: "sched_switch (two threads yielding on one CPU)",
        op: yield_switch,
        n: 300_000,
        cases: &[Case {
            what: "empty program on sched_switch",
            progs: &["empty_switch"],
            runs_per_op: 1.0,
        }],
    },
];

/// Sonde's scheduler object, loaded and attached as the agent does.
fn sonde_scheduler(offcpu: bool) -> Box<dyn Any> {
    let ctx = BpfContext::new("scheduler", BpfOptions::default());
    let mut loader = ctx.loader(scheduler_skel::SchedulerSkelBuilder::default);
    loader.banks("sched_counters", scheduler::SCHED_BANK);
    loader.histograms("sched_latency", scheduler::SCHED_HISTS);
    let bpf = loader
        .load_with::<scheduler_skel::SchedulerSkel<'static>>(
            |open| {
                open.maps.rodata_data.as_deref_mut().expect("rodata").offcpu = offcpu;
                Ok(())
            },
            |_| Ok(()),
        )
        .expect("load the scheduler object");
    Box::new(bpf)
}

/// Sonde's syscall object; `timed`: with its sys_exit program, timing 1 in
/// `sample_every`.
fn sonde_syscall(timed: bool, sample_every: u32) -> Box<dyn Any> {
    let ctx = BpfContext::new("syscall", BpfOptions::default());
    let mut loader = ctx.loader(syscall_skel::SyscallSkelBuilder::default);
    if !timed {
        loader.unused(&["sys_exit"]);
    }
    loader.banks("syscall_counters", syscall::SYSCALL_BANK);
    loader.histograms("syscall_latency", syscall::SYSCALL_OPS);
    let bpf = loader
        .load_with::<syscall_skel::SyscallSkel<'static>>(
            |open| {
                let rodata = open.maps.rodata_data.as_deref_mut().expect("rodata");
                rodata.timed = timed;
                rodata.sample_every = sample_every;
                Ok(())
            },
            |_| Ok(()),
        )
        .expect("load the syscall object");
    Box::new(bpf)
}

struct Sonde {
    what: &'static str,
    op: fn(u64) -> f64,
    n: u64,
    runs_per_op: f64,
    load: fn() -> Box<dyn Any>,
}

const SONDE: &[Sonde] = &[
    Sonde {
        what: "syscall, latency = \"off\": sys_enter (getppid)",
        op: getppid,
        n: 1_000_000,
        runs_per_op: 1.0,
        load: || sonde_syscall(false, 1),
    },
    Sonde {
        what: "syscall, latency = \"sampled\" (1 in 64): sys_enter + sys_exit (getppid)",
        op: getppid,
        n: 1_000_000,
        runs_per_op: 1.0,
        load: || sonde_syscall(true, 64),
    },
    Sonde {
        what: "syscall, latency = \"all\": sys_enter + sys_exit (getppid)",
        op: getppid,
        n: 1_000_000,
        runs_per_op: 1.0,
        load: || sonde_syscall(true, 1),
    },
    Sonde {
        what: "scheduler: sched_switch (yielding threads)",
        op: yield_switch,
        n: 300_000,
        runs_per_op: 1.0,
        load: || sonde_scheduler(false),
    },
    Sonde {
        what: "scheduler, offcpu = true: sched_switch (yielding threads)",
        op: yield_switch,
        n: 300_000,
        runs_per_op: 1.0,
        load: || sonde_scheduler(true),
    },
    Sonde {
        what: "scheduler (pipe ping-pong round trip)",
        op: pingpong,
        n: 50_000,
        runs_per_op: 1.0,
        load: || sonde_scheduler(false),
    },
    Sonde {
        what: "syscall, latency = \"off\" (pipe ping-pong round trip)",
        op: pingpong,
        n: 50_000,
        runs_per_op: 1.0,
        load: || sonde_syscall(false, 1),
    },
    Sonde {
        what: "scheduler + syscall, latency = \"off\" (pipe ping-pong round trip)",
        op: pingpong,
        n: 50_000,
        runs_per_op: 1.0,
        load: || Box::new((sonde_scheduler(false), sonde_syscall(false, 1))),
    },
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("floor: needs root to load BPF programs; not run");
        return;
    }
    pin(CPU);
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let mut open = skel::FloorSkelBuilder::default()
        .open(storage)
        .expect("open floor object");
    for mut m in open.open_object_mut().maps_mut() {
        if m.name() == "floor_counters" {
            let cpus = libbpf_rs::num_possible_cpus().unwrap();
            m.set_max_entries((cpus * 8) as u32).unwrap();
        }
    }
    let skel = open.load().expect("load floor object");
    println!("| hook (loop) | program | loop op, none → with it | added per program run |");
    println!("|---|---|---|---|");
    for l in LOOPS {
        let mut base = Vec::new();
        let mut added: Vec<Vec<f64>> = vec![Vec::new(); l.cases.len()];
        let mut with: Vec<Vec<f64>> = vec![Vec::new(); l.cases.len()];
        for _ in 0..ROUNDS {
            for (i, c) in l.cases.iter().enumerate() {
                // Each case against its own neighbouring baseline: the
                // machine's speed drifts between seconds.
                let b = (l.op)(l.n);
                let links: Vec<_> = skel
                    .object()
                    .progs_mut()
                    .filter(|p| c.progs.contains(&p.name().to_str().unwrap()))
                    .map(|p| p.attach().expect("attach"))
                    .collect();
                let w = (l.op)(l.n);
                drop(links);
                base.push(b);
                with[i].push(w);
                added[i].push((w - b) / c.runs_per_op);
            }
        }
        let b = median(base);
        for (i, c) in l.cases.iter().enumerate() {
            let w = median(std::mem::take(&mut with[i]));
            let a = median(std::mem::take(&mut added[i]));
            println!(
                "| {} | {} | {b:.0} → {w:.0} ns | {a:+.1} ns |",
                l.name, c.what
            );
        }
    }

    println!();
    println!("| Sonde's programs (loop) | loop op, none → with them | added per event |");
    println!("|---|---|---|");
    for c in SONDE {
        let mut added = Vec::new();
        let (mut base, mut with) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let b = (c.op)(c.n);
            let obj = (c.load)();
            let w = (c.op)(c.n);
            drop(obj);
            base.push(b);
            with.push(w);
            added.push((w - b) / c.runs_per_op);
        }
        println!(
            "| {} | {:.0} → {:.0} ns | {:+.1} ns |",
            c.what,
            median(base),
            median(with),
            median(added)
        );
    }
}
