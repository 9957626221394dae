//! systemd integration: the notify protocol as the real binary speaks it
//! (READY after the first refresh, watchdog pings, STOPPING on SIGTERM),
//! and the packaged units as `systemd-analyze verify` and the agent's
//! capability set see them.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use common::{bpf_or_skip, repo, Agent, BIN};

/// A socket playing systemd's notify socket: every datagram, stamped with
/// the wall-clock time it arrived.
struct NotifySocket {
    path: PathBuf,
    rx: mpsc::Receiver<(SystemTime, String)>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if tx.send((SystemTime::now(), msg)).is_err() {
                    break;
                }
            }
        });
        NotifySocket {
            path,
            rx,
            _dir: dir,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The first message with a line `line`, and when it arrived.
    fn wait(&self, line: &str, timeout: Duration) -> (SystemTime, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((t, msg)) if msg.lines().any(|l| l == line) => return (t, msg),
                Ok(_) => continue,
                Err(_) => panic!("no {line} within {timeout:?}"),
            }
        }
    }

    /// Messages with a line `line` arriving within `window`.
    fn count(&self, line: &str, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        let mut n = 0;
        while let Ok((_, msg)) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            n += msg.lines().any(|l| l == line) as usize;
        }
        n
    }
}

fn sigterm(agent: &mut Agent) {
    // SAFETY: kill has no memory effects; the pid is our live child.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
}

fn exits_cleanly(agent: &mut Agent) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = agent.child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agent_is_ready_after_the_first_refresh_and_pings_the_watchdog() {
    if !bpf_or_skip() {
        return;
    }
    let notify = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    // A long TTL: the first scrape below is served from the refresh the
    // agent made before READY, so its timestamp says when that was.
    let config = common::agent_config(dir.path(), |c| c.set("general.ttl", "1h"));
    let mut agent = Agent::spawn_env(
        &["agent", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", "2000000"),
        ],
        dir,
        "agent",
    );
    let (ready_at, msg) = notify.wait("READY=1", Duration::from_secs(5));
    assert!(
        msg.lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("samplers active")),
        "{msg:?}"
    );
    let snapshot: serde_json::Value =
        serde_json::from_slice(&agent.get("/metrics/json").body).unwrap();
    let t = &snapshot["systemtime"];
    let refreshed = SystemTime::UNIX_EPOCH
        + Duration::new(
            t["secs_since_epoch"].as_u64().unwrap(),
            t["nanos_since_epoch"].as_u64().unwrap() as u32,
        );
    assert!(
        refreshed <= ready_at,
        "the first snapshot ({refreshed:?}) was taken after READY ({ready_at:?})"
    );
    let counters = snapshot["counters"].as_array().unwrap();
    assert!(
        counters
            .iter()
            .any(|c| c["metadata"]["metric"] == "cpu_usage"),
        "no sampler data in the first snapshot"
    );
    // WATCHDOG_USEC=2 s: a ping every second.
    let pings = notify.count("WATCHDOG=1", Duration::from_secs(3));
    assert!(pings >= 2, "{pings} watchdog pings in 3 s");
    sigterm(&mut agent);
    notify.wait("STOPPING=1", Duration::from_secs(5));
    exits_cleanly(&mut agent);
}

fn exporter_config(dir: &Path) -> PathBuf {
    // Port 1 refuses at once: the first pull fails fast, the exporter serves.
    let path = dir.join("exporter.toml");
    std::fs::write(
        &path,
        "[listen]\naddress = \"127.0.0.1:0\"\n[general]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
         [[sources]]\nurl = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    path
}

#[test]
fn exporter_is_ready_once_listening_and_pings_the_watchdog() {
    let notify = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(dir.path());
    let mut exporter = Agent::spawn_env(
        &["exporter", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", "2000000"),
        ],
        dir,
        "exporter",
    );
    notify.wait("READY=1", Duration::from_secs(5));
    assert_eq!(exporter.get("/metrics").status, 200);
    let pings = notify.count("WATCHDOG=1", Duration::from_secs(3));
    assert!(pings >= 2, "{pings} watchdog pings in 3 s");
    sigterm(&mut exporter);
    notify.wait("STOPPING=1", Duration::from_secs(5));
    exits_cleanly(&mut exporter);
}

/// journald restarting, or a shell pipe whose reader went away, leaves the
/// daemon with a stderr that fails every write: logging must not panic
/// the thread that logs (the reload or the SIGTERM handler).
#[test]
fn a_closed_stderr_neither_stops_reloads_nor_the_sigterm_handler() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(dir.path());
    let mut child = Command::new(BIN)
        .args(["exporter", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines
            .next()
            .expect("exporter exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            break rest.split('/').next().unwrap().parse().unwrap();
        }
    };
    // The read end closes: every later write to stderr gets EPIPE.
    drop(lines);
    // Killed on drop, should an assertion below fail.
    let mut exporter = Agent {
        child,
        port,
        log: mpsc::channel().1,
        _dir: dir,
    };
    let url = format!("http://127.0.0.1:{port}/metrics");
    // A reload logs its outcome; the exporter must serve on after it.
    // SAFETY: kill has no memory effects; the pid is our live child.
    unsafe { libc::kill(exporter.child.id() as i32, libc::SIGHUP) };
    common::wait_for("a reload counted", Duration::from_secs(10), || {
        let text = common::http(&url, &[]).text();
        (common::total(&text, "sonde_config_reloads_total", &[]) >= 1.0).then_some(())
    });
    sigterm(&mut exporter);
    exits_cleanly(&mut exporter);
}

#[test]
fn a_watchdog_meant_for_another_pid_is_not_pinged() {
    let notify = NotifySocket::bind();
    let dir = tempfile::tempdir().unwrap();
    let config = exporter_config(dir.path());
    let _exporter = Agent::spawn_env(
        &["exporter", config.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify.path()),
            ("WATCHDOG_USEC", "2000000"),
            ("WATCHDOG_PID", "1"),
        ],
        dir,
        "exporter",
    );
    notify.wait("READY=1", Duration::from_secs(5));
    assert_eq!(notify.count("WATCHDOG=1", Duration::from_millis(2500)), 0);
}

/// The packaged units, with ExecStart rewritten to the built binary (verify
/// wants executables that exist), in a temporary directory.
fn units_with_binary(dir: &Path) -> Vec<PathBuf> {
    let mut units = Vec::new();
    for entry in std::fs::read_dir(repo().join("packaging/systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            let text = std::fs::read_to_string(&path).unwrap();
            let out = dir.join(path.file_name().unwrap());
            std::fs::write(&out, text.replace("/usr/bin/sonde", BIN)).unwrap();
            units.push(out);
        }
    }
    units.sort();
    units
}

#[test]
fn units_pass_systemd_analyze_verify_without_a_warning() {
    assert!(
        common::have("systemd-analyze"),
        "systemd-analyze is not installed; `cargo xtask test` installs it (Debian package systemd)"
    );
    let dir = tempfile::tempdir().unwrap();
    let units = units_with_binary(dir.path());
    let names: Vec<_> = units
        .iter()
        .map(|u| u.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "sonde-exporter.service",
            "sonde-hindsight.service",
            "sonde-push.service",
            "sonde.service"
        ]
    );
    for unit in &units {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(unit)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{}: {said}",
            unit.display()
        );
    }
}

/// The value of `key=` in a unit (the last assignment wins, as in systemd).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}="))
        .to_string()
}

#[test]
fn unit_capabilities() {
    let agent = std::fs::read_to_string(repo().join("packaging/systemd/sonde.service")).unwrap();
    let caps = unit_value(&agent, "CapabilityBoundingSet");
    for needed in ["CAP_BPF", "CAP_PERFMON"] {
        assert!(caps.split(' ').any(|c| c == needed), "{caps}");
    }
    assert!(!caps.contains("CAP_SYS_ADMIN"), "{caps}");
    assert!(!caps.starts_with('~'), "a deny list, not an allow list");
    let filter = agent
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .collect::<Vec<_>>()
        .join(" ");
    for call in ["bpf", "perf_event_open"] {
        assert!(filter.split(' ').any(|c| c == call), "{filter}");
    }
    for unit in [
        "sonde-exporter.service",
        "sonde-push.service",
        "sonde-hindsight.service",
    ] {
        let text = std::fs::read_to_string(repo().join("packaging/systemd").join(unit)).unwrap();
        assert_eq!(unit_value(&text, "User"), "sonde", "{unit}");
        assert_eq!(unit_value(&text, "CapabilityBoundingSet"), "", "{unit}");
        assert_eq!(unit_value(&text, "NoNewPrivileges"), "yes", "{unit}");
    }
}

/// The agent under sonde.service's capability bounding set and nothing
/// else, with every mount read-only as ProtectSystem=strict,
/// ProtectKernelTunables= and ProtectControlGroups= make them: every
/// sampler starts and attaches as it does with full root.
#[test]
fn every_sampler_starts_with_only_the_units_capabilities_and_read_only_mounts() {
    if !bpf_or_skip() {
        return;
    }
    let agent_unit =
        std::fs::read_to_string(repo().join("packaging/systemd/sonde.service")).unwrap();
    let bounding: Vec<String> = unit_value(&agent_unit, "CapabilityBoundingSet")
        .split(' ')
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let script = format!(
        "set -e\n\
         mount --make-rprivate /\n\
         for m in $(awk '{{print $5}}' /proc/self/mountinfo | sort -u); do\n\
           case \"$m\" in /proc|/dev|/dev/*|/run*|/tmp*) continue;; esac\n\
           mount -o remount,bind,ro \"$m\" 2>/dev/null || true\n\
         done\n\
         mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys\n\
         exec setpriv --reuid=0 --inh-caps=-all --bounding-set=-all,{} \"$@\"\n",
        bounding.join(",")
    );
    let restricted = samplers_json(&["unshare", "-m", "sh", "-c", &script, "sh"]);
    let full = samplers_json(&[]);
    let summary = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let programs: Vec<String> = s["programs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| format!("{}={}", p["name"], p["attached"]))
                    .collect();
                format!("{} {} {}", s["name"], s["status"], programs.join(","))
            })
            .collect()
    };
    assert_eq!(summary(&restricted), summary(&full));
}

/// `/samplers` of the agent started through `wrapper` (empty: directly).
fn samplers_json(wrapper: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let config = common::agent_config(dir.path(), |c| c);
    let mut argv: Vec<&str> = wrapper.to_vec();
    let config = config.to_str().unwrap().to_string();
    argv.extend([BIN, "agent", &config]);
    let agent = Agent::spawn_program(&argv, dir, "agent");
    serde_json::from_slice(&agent.get("/samplers").body).unwrap()
}
