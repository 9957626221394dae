//! The accounting, on this machine's processes and on made-up ones.

use super::*;

crate::family! {
    static T: Counter {
        name: "test_processes_dropped",
        unit: Count,
        labels: ["test", "series"],
        sampler: "test",
        source: "test",
        help: "x",
    }
}

/// A tracker whose `dropped` and `walk_time` series are its test's own
/// (tests run in parallel: a shared series could not be read exactly).
fn tracker(test: &str) -> Tracker {
    Tracker::new(
        Settings {
            classifier: Classifier::new(&[]),
            max_groups: 1000,
            kernel_threads: false,
            forget_after: Duration::from_secs(600),
            exits: true,
        },
        None,
        T.series(&[test, "dropped"]),
        T.series(&[test, "walk_time"]),
    )
}

/// CPU time, ns, of `clock` (CLOCK_PROCESS_CPUTIME_ID: what /proc/PID/stat
/// splits into utime and stime; CLOCK_THREAD_CPUTIME_ID: this thread's).
fn cpu_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: a valid out-pointer for clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn walks_this_machine_and_groups_by_comm() {
    let mut t = tracker("walks_this_machine");
    let tick = t.ns_per_tick;
    let process_before = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    t.walk();
    let me = std::process::id();
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let comm = comm.trim();
    assert_eq!(t.group_of(me), Some(comm));
    // No matchers: every process the walk read is in the group of its
    // comm, kernel threads in none (a group refused at max_groups aside).
    for (pid, p) in &t.procs {
        let name = String::from_utf8_lossy(p.comm.as_bytes());
        match (&p.group, p.kthread) {
            (None, true) => {}
            (Some(g), false) => assert_eq!(&**g, &*name, "pid {pid}"),
            (None, false) => assert!(
                t.refused.contains(&*name),
                "pid {pid} ({name}) has no group"
            ),
            (Some(g), true) => panic!("kernel thread {pid} ({name}) in group {g}"),
        }
    }
    // After one walk the groups are exactly its processes' (none emptied).
    let named: HashSet<&str> = t
        .procs
        .values()
        .filter_map(|p| p.group.as_deref())
        .collect();
    let groups: HashSet<&str> = t.groups.keys().map(|g| &**g).collect();
    assert_eq!(named, groups);
    let kthreadd = t.procs.get(&2).map(|p| (p.kthread, p.group.clone()));
    if let Some((k, g)) = kthreadd {
        assert!(k && g.is_none(), "kernel threads are not grouped");
    }
    let own = |t: &Tracker| {
        let last = t.procs[&me].last;
        last.user + last.system
    };
    let sum = |g: Totals| g.user + g.system;
    let (own_before, group_before) = (own(&t), sum(t.groups[comm].published));
    // Burn 50 ms of this thread's CPU (CPU, not wall time: on a busy
    // machine 50 ms of wall time may be much less CPU).
    const BURN: u64 = 50_000_000;
    let start = cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    while cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID) - start < BURN {}
    t.walk();
    let process_after = cpu_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    let (own_after, group_after) = (own(&t), sum(t.groups[comm].published));
    // Not exact: this process's other threads (the other tests) ran
    // meanwhile, and /proc/PID/stat gives utime and stime each rounded
    // down to a tick, so a reading is within 2 ticks below the process's
    // CPU time. Between the two walks the process used at least BURN and at
    // most what its clock advanced over both walks.
    let used = own_after - own_before;
    assert!(
        used > BURN.saturating_sub(2 * tick),
        "this process's CPU moved {used} ns over a {BURN} ns burn (tick {tick} ns)"
    );
    assert!(
        used < process_after - process_before + 2 * tick,
        "this process's CPU moved {used} ns, its clock {} ns (tick {tick} ns)",
        process_after - process_before
    );
    // The group's counter follows, never down: other members (other
    // processes of this name) only add.
    assert!(
        group_after >= group_before + used,
        "the group went from {group_before} to {group_after} ns, this process moved {used} ns"
    );
}

fn exit_of(pid: u32, start_ns: u64, runtime: u64, comm: &[u8]) -> Exit {
    let mut c = [0u8; 16];
    c[..comm.len()].copy_from_slice(comm);
    Exit {
        tgid: pid,
        flags: 0,
        start_ns,
        runtime,
        utime: 1,
        stime: 0,
        read_bytes: 0,
        write_bytes: 0,
        comm: c,
    }
}

fn fake(t: &mut Tracker, pid: u32, start: u64, group: &str, user: u64) {
    let g = t.group(group);
    t.procs.insert(
        pid,
        Proc {
            start,
            seen: t.pass,
            comm: Comm::new(group.as_bytes()),
            group: g,
            last: Totals {
                user,
                ..Totals::default()
            },
            offset: Totals::default(),
            exited: false,
            kthread: false,
            uid: 0,
            rss: 0,
            vsize: 0,
            swap: 0,
            threads: 1,
            fds: 0,
            cpu_rate: 0.0,
            read_rate: 0.0,
            write_rate: 0.0,
        },
    );
}

/// The group's published counters and its live members, after a publish.
fn state(t: &mut Tracker, group: &str) -> (Totals, u64) {
    t.publish(Instant::now());
    let g = &t.groups[group];
    (g.published, g.members.procs)
}

/// `ns` of user CPU and nothing else: the fakes have only user time, and
/// every record here has utime 1, stime 0 (all its runtime is user time)
/// and no I/O.
fn user(ns: u64) -> Totals {
    Totals {
        user: ns,
        ..Totals::default()
    }
}

#[test]
fn exits_are_counted_once() {
    let mut t = tracker("exits_are_counted_once");
    let tick = t.ns_per_tick;
    // Tracked and alive, then its exit record: final CPU, once.
    fake(&mut t, 4_000_001, 10, "fakeburn", 300);
    assert_eq!(state(&mut t, "fakeburn"), (user(300), 1));
    t.exit(&exit_of(4_000_001, 10 * tick, 500, b"fakeburn"));
    // Exited: counted in the group's base, no longer a live member.
    assert_eq!(state(&mut t, "fakeburn"), (user(500), 0));
    t.exit(&exit_of(4_000_001, 10 * tick, 500, b"fakeburn"));
    assert_eq!(
        state(&mut t, "fakeburn"),
        (user(500), 0),
        "a duplicate record adds nothing"
    );
    let p = t.procs.remove(&4_000_001).unwrap();
    t.vanish(4_000_001, p);
    assert_eq!(
        state(&mut t, "fakeburn"),
        (user(500), 0),
        "the walk does not add it again"
    );

    // Seen vanishing first (last-seen kept), then the record tops it up:
    // 500 + 100, then + (250 - 100).
    fake(&mut t, 4_000_002, 20, "fakeburn", 100);
    assert_eq!(state(&mut t, "fakeburn"), (user(600), 1));
    let p = t.procs.remove(&4_000_002).unwrap();
    t.vanish(4_000_002, p);
    assert_eq!(state(&mut t, "fakeburn"), (user(600), 0));
    t.exit(&exit_of(4_000_002, 20 * tick, 250, b"fakeburn"));
    assert_eq!(state(&mut t, "fakeburn"), (user(750), 0));

    // Never seen: all of it, in the group of its comm (750 + 1000).
    t.exit(&exit_of(4_000_003, 30 * tick, 1000, b"fakeburn"));
    assert_eq!(state(&mut t, "fakeburn"), (user(1750), 0));
    // A record for the same pid but another start is another process:
    // the live one's 10 and the record's 7 (1750 + 10 + 7).
    fake(&mut t, 4_000_004, 40, "fakeburn", 10);
    t.exit(&exit_of(4_000_004, 41 * tick, 7, b"fakeburn"));
    assert_eq!(state(&mut t, "fakeburn"), (user(1767), 1));
    assert_eq!(t.groups.len(), 1, "every record went to fakeburn");
}

#[test]
fn groups_beyond_the_limit_are_refused_and_counted() {
    let mut t = tracker("groups_beyond_the_limit");
    t.settings.max_groups = 1;
    assert_eq!(t.group("a").as_deref(), Some("a"));
    assert!(t.group("b").is_none());
    assert!(t.group("b").is_none());
    assert!(t.group("c").is_none());
    let refused: HashSet<String> = ["b", "c"].map(String::from).into();
    assert_eq!(t.refused, refused);
    // Each refused name counted once: b (refused twice) and c. `gauge`
    // reads the series' stored value, a counter's too.
    assert_eq!(t.dropped.gauge(), 2, "groups dropped");
    assert_eq!(t.group("a").as_deref(), Some("a"));
    assert_eq!(t.groups.len(), 1);
}
