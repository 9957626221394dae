//! The accounting, on this machine's processes and on made-up ones.

use super::*;

crate::family! {
    static T: Counter {
        name: "test_processes_dropped",
        unit: Count,
        labels: [],
        sampler: "test",
        source: "test",
        help: "x",
    }
}

fn tracker() -> Tracker {
    Tracker::new(
        Settings {
            classifier: Classifier::new(&[]),
            max_groups: 1000,
            kernel_threads: false,
            forget_after: Duration::from_secs(600),
            exits: true,
        },
        None,
        T.single(),
        T.single(),
    )
}

#[test]
fn walks_this_machine_and_groups_by_comm() {
    let mut t = tracker();
    t.walk();
    let me = std::process::id();
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(t.group_of(me), Some(comm.trim()));
    assert!(!t.groups.is_empty());
    let kthreadd = t.procs.get(&2).map(|p| (p.kthread, p.group.clone()));
    if let Some((k, g)) = kthreadd {
        assert!(k && g.is_none(), "kernel threads are not grouped");
    }
    let before = t.groups[comm.trim()].published;
    // Burn a little CPU: the group's counter follows, never down.
    let end = Instant::now() + Duration::from_millis(50);
    while Instant::now() < end {}
    t.walk();
    let after = t.groups[comm.trim()].published;
    assert!(after.user + after.system >= before.user + before.system);
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

fn user(t: &mut Tracker, group: &str) -> u64 {
    t.publish(Instant::now());
    t.groups[group].published.user
}

#[test]
fn exits_are_counted_once() {
    let mut t = tracker();
    let tick = t.ns_per_tick;
    // Tracked and alive, then its exit record: final CPU, once.
    fake(&mut t, 4_000_001, 10, "fakeburn", 300);
    assert_eq!(user(&mut t, "fakeburn"), 300);
    t.exit(&exit_of(4_000_001, 10 * tick, 500, b"fakeburn"));
    assert_eq!(user(&mut t, "fakeburn"), 500);
    t.exit(&exit_of(4_000_001, 10 * tick, 500, b"fakeburn"));
    assert_eq!(
        user(&mut t, "fakeburn"),
        500,
        "a duplicate record adds nothing"
    );
    let p = t.procs.remove(&4_000_001).unwrap();
    t.vanish(4_000_001, p);
    assert_eq!(
        user(&mut t, "fakeburn"),
        500,
        "the walk does not add it again"
    );

    // Seen vanishing first (last-seen kept), then the record tops it up.
    fake(&mut t, 4_000_002, 20, "fakeburn", 100);
    assert_eq!(user(&mut t, "fakeburn"), 600);
    let p = t.procs.remove(&4_000_002).unwrap();
    t.vanish(4_000_002, p);
    assert_eq!(user(&mut t, "fakeburn"), 600);
    t.exit(&exit_of(4_000_002, 20 * tick, 250, b"fakeburn"));
    assert_eq!(user(&mut t, "fakeburn"), 750);

    // Never seen: all of it, in the group of its comm.
    t.exit(&exit_of(4_000_003, 30 * tick, 1000, b"fakeburn"));
    assert_eq!(user(&mut t, "fakeburn"), 1750);
    // A record for the same pid but another start is another process.
    fake(&mut t, 4_000_004, 40, "fakeburn", 10);
    t.exit(&exit_of(4_000_004, 41 * tick, 7, b"fakeburn"));
    assert_eq!(user(&mut t, "fakeburn"), 1767);
}

#[test]
fn groups_beyond_the_limit_are_refused_and_counted() {
    let mut t = tracker();
    t.settings.max_groups = 1;
    assert!(t.group("a").is_some());
    assert!(t.group("b").is_none());
    assert!(t.group("b").is_none());
    assert!(t.group("c").is_none());
    assert_eq!(t.refused.len(), 2);
    assert!(t.group("a").is_some());
}
