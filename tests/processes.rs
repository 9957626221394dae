//! The `processes` sampler against real processes: a burner that uses a
//! known amount of CPU under a name of our choosing, the real agent, its
//! /top endpoint and `sonde top`.
//!
//! The burner is this test binary run again through a symlink (comm is the
//! basename of the path exec'd), entering the `burner` function below (an
//! ignored test, run by name) with its orders in the environment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// CPU time of this whole process, seconds.
fn process_cpu() -> f64 {
    // SAFETY: a valid out-pointer for clock_gettime.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Not a test: the burner's entry point, a test function only so that the
/// harness of the re-executed test binary can enter it. [`burn`] runs it
/// explicitly with `--ignored --exact burner`; ignored, so a normal run
/// neither runs it nor counts it as a passing test, and run any other way
/// (`--include-ignored`) it returns at once, without SONDEBURN_SECS.
/// Burns SONDEBURN_SECS of CPU over SONDEBURN_THREADS threads, then stays
/// alive, idle, for SONDEBURN_LINGER seconds and exits.
#[test]
#[ignore = "not a test: the burner's entry point, run by `burn` (--ignored --exact burner)"]
fn burner() {
    let Ok(secs) = std::env::var("SONDEBURN_SECS") else {
        return;
    };
    let secs: f64 = secs.parse().unwrap();
    let threads: usize = std::env::var("SONDEBURN_THREADS").map_or(1, |t| t.parse().unwrap());
    let linger: f64 = std::env::var("SONDEBURN_LINGER").map_or(0.0, |t| t.parse().unwrap());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut x = 0u64;
                while process_cpu() < secs {
                    for i in 0..10_000u64 {
                        x = x.wrapping_mul(31).wrapping_add(i);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    println!("burned {:.3}", process_cpu());
    std::thread::sleep(Duration::from_secs_f64(linger));
}

/// Starts the burner named `name` (its comm, so its group). Every agent
/// sees every process: each test uses names of its own.
fn burn(dir: &Path, name: &str, secs: f64, threads: usize, linger: f64) -> Child {
    let link: PathBuf = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &link).unwrap();
    }
    Command::new(&link)
        .args([
            "burner",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("SONDEBURN_SECS", secs.to_string())
        .env("SONDEBURN_THREADS", threads.to_string())
        .env("SONDEBURN_LINGER", linger.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// config/agent.toml's `[samplers.processes]` with a 1 s interval, then
/// `edit`.
fn processes_config(edit: impl Fn(Config) -> Config) -> impl Fn(Config) -> Config {
    move |c: Config| edit(c.set("samplers.processes.interval", "1s"))
}

fn group_cpu(agent: &Agent, group: &str) -> f64 {
    total(
        &scrape(agent),
        "namedprocess_namegroup_cpu_seconds_total",
        &[&format!("groupname=\"{group}\"")],
    )
}

#[test]
fn a_burner_is_counted_and_its_cpu_outlives_it() {
    if !bpf_or_skip() {
        return;
    }
    let agent = agent_with_config(&["processes"], processes_config(|c| c));
    let samplers: serde_json::Value = serde_json::from_slice(&agent.get("/samplers").body).unwrap();
    let me = samplers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "processes")
        .unwrap();
    assert_eq!(
        me["programs"][0]["attached"], true,
        "the exit program must attach here: {me}"
    );
    let dir = tempfile::tempdir().unwrap();

    // 1 s of CPU, then idle for 3 s: the walks see it all while it lives.
    let mut child = burn(dir.path(), "sondeburn", 1.0, 1, 3.0);
    let alive = wait_for("the burner's CPU", Duration::from_secs(20), || {
        let cpu = group_cpu(&agent, "sondeburn");
        (cpu >= 0.95).then_some(cpu)
    });
    let text = scrape(&agent);
    assert_eq!(
        sample(
            &text,
            "namedprocess_namegroup_num_procs",
            &["groupname=\"sondeburn\""]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "namedprocess_namegroup_num_threads",
            &["groupname=\"sondeburn\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "namedprocess_namegroup_memory_bytes",
            &["groupname=\"sondeburn\"", "memtype=\"resident\""]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        sample(
            &text,
            "namedprocess_namegroup_open_filedesc",
            &["groupname=\"sondeburn\""]
        )
        .unwrap()
            >= 3.0
    );
    child.wait().unwrap();
    // Ended: its CPU stays in the group, walk after walk.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(600));
        let after = group_cpu(&agent, "sondeburn");
        assert!(after >= alive, "the counter went down: {alive} -> {after}");
        // Its exit record matched the process the walks tracked (pid and
        // start time): added once, not on top of what they counted.
        assert!(after < alive + 0.3, "counted twice: {alive} -> {after}");
    }
    let text = scrape(&agent);
    assert_eq!(
        sample(
            &text,
            "namedprocess_namegroup_num_procs",
            &["groupname=\"sondeburn\""]
        ),
        Some(0.0)
    );

    // Burns 0.5 s and ends at once, at most one walk seeing it: the exit
    // record brings the whole of it.
    let mut child = burn(dir.path(), "sondeflash", 0.5, 1, 0.0);
    child.wait().unwrap();
    let cpu = wait_for("the short burner's CPU", Duration::from_secs(10), || {
        let cpu = group_cpu(&agent, "sondeflash");
        (cpu >= 0.45).then_some(cpu)
    });
    assert!(cpu < 1.0, "counted twice? {cpu}");

    // Several that live and end between two walks, in parallel threads.
    let started = Instant::now();
    for _ in 0..3 {
        burn(dir.path(), "sondetwin", 0.2, 2, 0.0).wait().unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let cpu = wait_for("the twins' CPU", Duration::from_secs(10), || {
        let cpu = group_cpu(&agent, "sondetwin");
        (cpu >= 0.55).then_some(cpu)
    });
    assert!(cpu < 1.2, "counted twice? {cpu}");
    // No pid in any series.
    assert!(!scrape(&agent).contains(&format!("\"{}\"", child.id())));
}

#[test]
fn without_exit_records_the_last_walk_is_kept() {
    let agent = agent_with_config(
        &["processes"],
        processes_config(|c| c.set("samplers.processes.exits", false)),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = burn(dir.path(), "sondekeep", 1.0, 1, 2.5);
    let alive = wait_for("the burner's CPU", Duration::from_secs(20), || {
        let cpu = group_cpu(&agent, "sondekeep");
        (cpu >= 0.95).then_some(cpu)
    });
    child.wait().unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(600));
        let after = group_cpu(&agent, "sondekeep");
        assert!(after >= alive, "the counter went down: {alive} -> {after}");
    }
}

#[test]
fn groups_are_configured_by_matchers_and_bounded() {
    let agent = agent_with_config(
        &["processes"],
        processes_config(|c| {
            // Two [[samplers.processes.groups]], as an array of inline tables.
            c.set("samplers.processes.max_groups", 2_i64).add(
                "samplers.processes.groups",
                config::value(
                    r#"[
                        { name = "burners", comm = ["sondegrp*"] },
                        { name = "x:{comm}", comm = ["sondex*"], exe = ["*/deps/processes-*"] },
                    ]"#,
                ),
            )
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let a = burn(dir.path(), "sondegrp1", 0.3, 1, 2.0);
    let b = burn(dir.path(), "sondegrp2", 0.3, 1, 2.0);
    let cpu = wait_for("both burners in one group", Duration::from_secs(20), || {
        let cpu = group_cpu(&agent, "burners");
        (cpu >= 0.55).then_some(cpu)
    });
    assert!(cpu < 1.0, "{cpu}");
    // Two more groups wanted (x:sondexone, x:sondextwo), room for one.
    let c = burn(dir.path(), "sondexone", 0.05, 1, 3.0);
    let d = burn(dir.path(), "sondextwo", 0.05, 1, 3.0);
    let text = wait_for("a group refused", Duration::from_secs(10), || {
        let text = scrape(&agent);
        (sample(&text, "sonde_processes_groups_dropped_total", &[]) == Some(1.0)).then_some(text)
    });
    let groups: Vec<String> = samples(&text, "namedprocess_namegroup_num_procs")
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(
        groups.contains(&"groupname=\"burners\"".to_string()),
        "{groups:?}"
    );
    assert!(
        groups.iter().any(|g| g.starts_with("groupname=\"x:sondex")),
        "{groups:?}"
    );
    for mut child in [a, b, c, d] {
        child.wait().unwrap();
    }
}

/// A copy of the agent's config with its real port, for `sonde top`.
fn config_with_port(agent: &Agent, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(agent._dir.path().join("agent.toml")).unwrap();
    let config = Config::parse("agent.toml", &text)
        .set("listen.address", format!("127.0.0.1:{}", agent.port));
    let path = dir.join("top.toml");
    std::fs::write(&path, config.text()).unwrap();
    path
}

#[test]
fn top_ranks_the_burner_first_and_sonde_top_prints_it() {
    let agent = agent_with_config(&["processes"], processes_config(|c| c));
    let dir = tempfile::tempdir().unwrap();
    let mut child = burn(dir.path(), "sondetop", 30.0, 2, 0.0);
    let pid = child.id();
    // First in by_cpu on some walk (other work on the machine may outrun
    // it for a moment).
    let table = wait_for("the burner first in /top", Duration::from_secs(15), || {
        let r = agent.get("/top");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let t: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (t["by_cpu"][0]["pid"] == pid).then_some(t)
    });
    let first = &table["by_cpu"][0];
    assert_eq!(first["comm"], "sondetop");
    assert!(first["cpu_percent"].as_f64().unwrap() > 50.0, "{first}");
    assert!(first["threads"].as_u64().unwrap() >= 3, "{first}");
    assert!(first["rss_bytes"].as_u64().unwrap() > 0);
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } == 0 {
        assert_eq!(first["user"], "root");
    }
    assert!(
        first["cgroup"].as_str().unwrap().starts_with('/'),
        "{first}"
    );
    assert_eq!(table["interval_seconds"], 1.0);
    assert!(table["by_rss"].as_array().unwrap().len() <= 50);
    assert!(table["processes"].as_u64().unwrap() >= 2);

    let config = config_with_port(&agent, dir.path());
    let out = Command::new(BIN)
        .args(["top", config.to_str().unwrap(), "--once", "-n", "50"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PID") && stdout.contains("CPU%") && stdout.contains("CGROUP"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.contains("sondetop"))
        .unwrap_or_else(|| panic!("no sondetop row:\n{stdout}"));
    assert!(row.trim_start().starts_with(&pid.to_string()), "{row}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn top_is_a_clear_error_when_off_or_unreachable() {
    // Sampler disabled: 404 with a JSON reason, and `sonde top` says so.
    let agent = agent_with(&["load"]);
    let r = agent.get("/top");
    assert_eq!(r.status, 404);
    let e: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("processes sampler"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_port(&agent, dir.path());
    let out = Command::new(BIN)
        .args(["top", config.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("404") && stderr.contains("processes sampler"),
        "{stderr}"
    );
    drop(agent);

    // No agent: exit 1, naming the address, no panic.
    let port = free_port();
    let path = agent_config(dir.path(), |c| {
        c.set("listen.address", format!("127.0.0.1:{port}"))
    });
    let out = Command::new(BIN)
        .args(["top", path.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("is the agent running"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = Command::new(BIN).args(["top", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--once") && help.contains("--rows"), "{help}");
}

#[test]
fn config_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let p = path.to_str().unwrap();
    std::fs::write(&path, "[samplers.processes]\nintervall = \"1s\"\n").unwrap();
    let out = Command::new(BIN).args(["check", p]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{p}:2: key `samplers.processes.intervall`: unknown field `intervall`"
        )),
        "{stderr}"
    );

    std::fs::write(
        &path,
        "[samplers.processes]\ntop = 5\n\n[[samplers.processes.groups]]\nname = \"web\"\n\n[[samplers.processes.groups]]\nname = \"db\"\ncomm = [\"postgres\"]\nexee = [\"/usr/*\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check", p]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("key `samplers.processes.groups[1].exee`: unknown field `exee`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    std::fs::write(
        &path,
        "[samplers.processes]\n\n[[samplers.processes.groups]]\nname = \"web\"\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check", p]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{p}:3: key `samplers.processes.groups[0]`: needs at least one of comm, exe or cmdline"
        )),
        "{stderr}"
    );
}

/// In its own pid namespace with its own /proc (a container), exit records
/// cannot be matched to processes: the sampler runs on without them and
/// /samplers says why, as for a program that did not attach.
#[test]
fn in_a_pid_namespace_of_its_own_the_degraded_mode_is_reported() {
    if !bpf_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = only_samplers_config(dir.path(), &["processes"], processes_config(|c| c));
    let mut child = Command::new(tool("unshare"))
        // --kill-child: killing unshare must not leave the agent running.
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", BIN])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            eprintln!("[unshared agent] {line}");
            let _ = tx.send(line);
        }
    });
    let port: u16 = wait_for("the agent to listen", Duration::from_secs(20), || {
        let line = rx.try_recv().ok()?;
        line.split("listening on http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next()?.parse().ok())
    });
    let body = http(&format!("http://127.0.0.1:{port}/samplers"), &[]).body;
    let _ = child.kill();
    let _ = child.wait();
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "processes")
        .unwrap();
    assert_eq!(me["status"], "active", "{me}");
    let program = &me["programs"][0];
    assert_eq!(program["name"], "sched_process_free", "{me}");
    assert_eq!(program["attached"], false, "{me}");
    assert!(
        program["reason"]
            .as_str()
            .unwrap()
            .contains("pid namespace"),
        "{me}"
    );
}
