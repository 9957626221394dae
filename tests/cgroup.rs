//! The cgroup sampler against real cgroups: created in this host's
//! hierarchy (v1 hybrid on our machines, v2 elsewhere) with container-like
//! names, real workloads moved into them, values checked against the
//! cgroup's own files and the workload's own rusage.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cgroup::{hierarchies, TestCgroup};
use common::config::array;
use common::{sample, samples, Agent, Config};

/// Runs `cmd` to completion; its CPU time (with its reaped children) from
/// wait4's rusage, in seconds.
fn run_cpu(mut cmd: Command) -> f64 {
    // Reaped by wait4 below (std's wait would not give the rusage).
    #[allow(clippy::zombie_processes)]
    let child = cmd.spawn().expect("spawn the workload");
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child with valid out-pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(r, child.id() as i32, "wait4");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

fn wait_for(agent: &Agent, what: &str, mut ok: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = agent.metrics();
        if ok(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The agent with `[samplers.cgroup]` reading every second, exporting a
/// cgroup once it is `min_age` old, and only cgroups matching `include`;
/// then `edit`.
fn agent_with(min_age: &str, include: &str, edit: impl Fn(Config) -> Config) -> Agent {
    Agent::start_with(|c| {
        edit(
            c.set("samplers.cgroup.interval", "1s")
                .set("samplers.cgroup.min_age", min_age)
                .set("samplers.cgroup.include", array(&[include])),
        )
    })
}

const HEX: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

#[test]
fn container_cgroups_are_measured_and_named() {
    let pid = std::process::id();
    let docker = TestCgroup::new(&format!("/sondetest{pid}.slice/docker-{HEX}.scope"));
    let pod = "0d3a5c1e-7b2f-4c8e-9a61-2f4b8c7d9e10";
    let kube = TestCgroup::new(&format!(
        "/sondetest{pid}.slice/kubepods-burstable-pod{}.slice/cri-containerd-{HEX}.scope",
        pod.replace('-', "_")
    ));
    let unit = TestCgroup::new(&format!("/sondetest{pid}.slice/sondeunit.service"));
    let agent = agent_with("0s", &format!("/sondetest{pid}.slice*"), |c| c);
    let id = |cg: &TestCgroup| format!("id=\"{}\"", cg.path);
    // Every test cgroup appears, with labels from its path.
    // ... and their in-kernel counters (the BPF samplers start after the
    // cgroup sampler's first pass; the next pass gives them slots).
    let text = wait_for(&agent, "the test cgroups", |t| {
        [&docker, &kube, &unit].iter().all(|cg| {
            sample(t, "container_cpu_usage_seconds_total", &[&id(cg)]).is_some()
                && sample(t, "cgroup_oncpu_seconds_total", &[&id(cg)]).is_some()
        })
    });
    let line = |cg: &TestCgroup| {
        text.lines()
            .find(|l| l.starts_with("container_cpu_usage_seconds_total{") && l.contains(&id(cg)))
            .unwrap()
            .to_string()
    };
    assert!(
        line(&docker).contains(&format!("container_id=\"{HEX}\"")),
        "{}",
        line(&docker)
    );
    assert!(
        line(&kube).contains(&format!("pod=\"{pod}\"")),
        "{}",
        line(&kube)
    );
    assert!(
        line(&kube).contains(&format!("container_id=\"{HEX}\"")),
        "{}",
        line(&kube)
    );
    assert!(
        line(&unit).contains("name=\"sondeunit.service\""),
        "{}",
        line(&unit)
    );
    assert!(!text.contains("unknown_cgroup_id"));

    // The syscall sampler may start later than the scheduler (slow
    // startup): wait until this cgroup's syscalls are counted too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        run_cpu(docker.command("true", &[]));
        let t = agent.metrics();
        if samples(&t, "cgroup_syscalls_total")
            .iter()
            .any(|(l, _)| l.contains(&id(&docker)))
        {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the cgroup's syscalls are never counted"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let writes_before = sample(
        &text,
        "cgroup_syscalls_total",
        &[&id(&docker), "op=\"write\""],
    )
    .unwrap_or(0.0);
    let reads_before = sample(
        &text,
        "cgroup_syscalls_total",
        &[&id(&docker), "op=\"read\""],
    )
    .unwrap_or(0.0);

    // CPU: three 1 s burners on two CPUs (so some wait on the run queue),
    // measured by their own rusage.
    let before = sample(&text, "container_cpu_usage_seconds_total", &[&id(&docker)]).unwrap();
    let oncpu_before = sample(&text, "cgroup_oncpu_seconds_total", &[&id(&docker)]).unwrap();
    let burners: Vec<_> = (0..3)
        .map(|_| {
            let cmd = docker.command("timeout", &["1", "sh", "-c", "while :; do :; done"]);
            std::thread::spawn(move || run_cpu(cmd))
        })
        .collect();
    let burned: f64 = burners.into_iter().map(|b| b.join().unwrap()).sum();
    assert!(burned > 0.3, "burners used {burned} s of CPU");
    // Syscalls: 100k reads and 100k writes by dd.
    let n = 100_000;
    let dd = docker.command(
        "dd",
        &[
            "if=/dev/zero",
            "of=/dev/null",
            "bs=1",
            &format!("count={n}"),
        ],
    );
    let dd_cpu = run_cpu(dd);
    let used = burned + dd_cpu;
    let after_file = docker.file("cpuacct", "cpuacct.usage");
    let text = wait_for(&agent, "the burners' CPU", |t| {
        sample(t, "container_cpu_usage_seconds_total", &[&id(&docker)])
            .is_some_and(|v| v - before >= used * 0.95)
            && sample(t, "cgroup_syscalls_total", &[&id(&docker), "op=\"write\""])
                .is_some_and(|v| v - writes_before >= n as f64)
    });
    let cpu = sample(&text, "container_cpu_usage_seconds_total", &[&id(&docker)]).unwrap() - before;
    assert!(
        (cpu - used).abs() <= used * 0.05,
        "cgroup CPU {cpu} s vs the workload's rusage {used} s (file: {after_file})"
    );
    let oncpu =
        sample(&text, "cgroup_oncpu_seconds_total", &[&id(&docker)]).unwrap() - oncpu_before;
    assert!(
        (oncpu - used).abs() <= used * 0.10,
        "BPF on-CPU {oncpu} s vs rusage {used} s"
    );
    let user = sample(&text, "container_cpu_user_seconds_total", &[&id(&docker)]).unwrap();
    let system = sample(&text, "container_cpu_system_seconds_total", &[&id(&docker)]).unwrap();
    assert!(user + system > 0.0);
    for (op, was) in [("read", reads_before), ("write", writes_before)] {
        let v = sample(
            &text,
            "cgroup_syscalls_total",
            &[&id(&docker), &format!("op=\"{op}\"")],
        )
        .unwrap()
            - was;
        assert!(v >= n as f64, "{op} syscalls {v} < {n}");
    }
    let wait = sample(&text, "cgroup_runqueue_wait_seconds_total", &[&id(&docker)]).unwrap();
    assert!(wait > 0.0, "run-queue wait {wait}");
    let switches: f64 = samples(&text, "cgroup_context_switches_total")
        .iter()
        .filter(|(l, _)| l.contains(&id(&docker)))
        .map(|(_, v)| v)
        .sum();
    assert!(switches > 0.0);
    // The unit's cgroup ran nothing: its BPF counters stay at zero.
    assert_eq!(
        sample(&text, "cgroup_oncpu_seconds_total", &[&id(&unit)]),
        Some(0.0)
    );

    // Memory equals the cgroup's own file, read after the scrape that
    // shows it (the kernel keeps freeing the exited workload's memory).
    let file = || -> f64 {
        let text = if hierarchies().len() > 1 {
            docker.file("memory", "memory.usage_in_bytes")
        } else {
            docker.file("", "memory.current")
        };
        text.trim().parse().unwrap()
    };
    let text = wait_for(&agent, "memory equal to the file", |t| {
        let shown = sample(t, "container_memory_usage_bytes", &[&id(&docker)]);
        shown == Some(file())
    });
    let usage = sample(&text, "container_memory_usage_bytes", &[&id(&docker)]).unwrap();
    assert!(sample(&text, "container_memory_working_set_bytes", &[&id(&docker)]).unwrap() <= usage);

    // /samplers tells the layout.
    let report = agent.get("/samplers").text();
    assert!(
        report.contains("layout, walking /sys/fs/cgroup"),
        "{report}"
    );

    // A cgroup that vanishes takes its series with it.
    let path = unit.path.clone();
    drop(unit);
    wait_for(&agent, "the removed cgroup's series to vanish", |t| {
        !t.contains(&format!("id=\"{path}\""))
    });
    let (ok, out) = common::promtool_check(&agent.metrics());
    assert!(ok, "{out}");
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn churn_is_bounded_by_max_cgroups_and_min_age() {
    let pid = std::process::id();
    let parent = TestCgroup::new(&format!("/sondechurn{pid}"));
    let max = 40;
    // Young cgroups wait for min_age; old ones beyond max_cgroups are
    // dropped and counted.
    let agent = agent_with("2s", &format!("/sondechurn{pid}/*"), |c| {
        c.set("samplers.cgroup.max_cgroups", max as i64)
    });
    let count = |t: &str| {
        t.lines()
            .filter(|l| {
                l.starts_with("container_cpu_usage_seconds_total{")
                    && l.contains(&format!("sondechurn{pid}/"))
            })
            .count()
    };
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = rss_kb(agent.child.id());
    // 10,000 cgroups that live a moment each: none is old enough.
    let dirs: Vec<PathBuf> = parent.dirs.clone();
    for i in 0..10_000 {
        for d in &dirs {
            let c = d.join(format!("j{}", i % 64));
            let _ = std::fs::create_dir(&c);
        }
        if i % 64 == 63 {
            for d in &dirs {
                for j in 0..64 {
                    let _ = std::fs::remove_dir(d.join(format!("j{j}")));
                }
            }
        }
    }
    for d in &dirs {
        for j in 0..64 {
            let _ = std::fs::remove_dir(d.join(format!("j{j}")));
        }
    }
    let text = agent.metrics();
    assert_eq!(count(&text), 0, "short-lived cgroups were exported");
    // 100 that stay: max_cgroups of them exported, the rest counted.
    let kept: Vec<TestCgroup> = (0..100)
        .map(|i| TestCgroup::new(&format!("/sondechurn{pid}/keep{i}")))
        .collect();
    let text = wait_for(&agent, "max_cgroups exported", |t| {
        count(t) == max
            && sample(t, "sonde_cgroups_dropped_total", &[])
                .is_some_and(|v| v >= (100 - max) as f64)
    });
    assert_eq!(
        sample(&text, "sonde_cgroups", &[]).unwrap() as usize,
        max,
        "exported gauge"
    );
    let rss_after = rss_kb(agent.child.id());
    assert!(
        rss_after < rss_before + 20 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    drop(kept);
    wait_for(&agent, "the kept cgroups' series to vanish", |t| {
        count(t) == 0
    });
    drop(parent);
}

#[test]
fn bad_cgroup_options_are_located_errors() {
    type Edit = fn(Config) -> Config;
    let cases: [(&str, &str, Edit); 3] = [
        ("maxcgroups = 1", "maxcgroups", |c| {
            c.add("samplers.cgroup.maxcgroups", 1_i64)
        }),
        ("max_cgroups = 5000", "max_cgroups", |c| {
            c.set("samplers.cgroup.max_cgroups", 5000_i64)
        }),
        ("min_age = \"soon\"", "min_age", |c| {
            c.set("samplers.cgroup.min_age", "soon")
        }),
    ];
    for (to, named, edit) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = common::agent_config(dir.path(), edit);
        let out = Command::new(common::BIN)
            .args(["check", path.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{to}: {err}");
        assert!(
            err.contains(named) && err.contains("agent.toml:"),
            "{to}: {err}"
        );
    }
}
