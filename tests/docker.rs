//! The Docker client against a real dockerd: this test starts its own
//! daemon on a temp socket and data root, runs a busybox container in it,
//! and checks that the container's cgroup path names it and that
//! `Docker::get` resolves its name and image.
//!
//! Needs root, `dockerd` (Debian's docker.io) and a static busybox
//! (busybox-static); `cargo xtask test` installs both. Without them the
//! test fails under CI=true and says why; elsewhere it prints the reason
//! and passes without checking anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sonde::samplers::cgroup::docker::Docker;
use sonde::samplers::cgroup::names;

/// Fails under CI, else reports why the test did not run.
fn cannot_run(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("cannot run the dockerd test: {why}");
    }
    eprintln!("SKIPPED tests/docker.rs: {why}");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A dockerd of our own, stopped and cleaned up on drop.
struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
    docker: PathBuf,
    containers: Vec<String>,
}

impl Daemon {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn start(dockerd: &Path, docker: PathBuf) -> Result<Daemon, String> {
        // Short paths: containerd's socket lives under exec-root and a
        // unix socket path has 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("sonde-dk")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("dockerd.log")).map_err(|e| e.to_string())?;
        let d = dir.path().display();
        let child = Command::new(dockerd)
            .args([
                format!("--data-root={d}/data"),
                format!("--exec-root={d}/exec"),
                format!("--pidfile={d}/dockerd.pid"),
                format!("--host=unix://{d}/docker.sock"),
                // No networking of its own: the test runs `--network none`
                // and must not touch the host's iptables or bridges.
                "--iptables=false".into(),
                "--bridge=none".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", dockerd.display()))?;
        let mut daemon = Daemon {
            dir,
            child,
            docker,
            containers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!("dockerd exited ({status}): {}", daemon.log_tail()));
            }
            if daemon
                .cli(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
            {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "dockerd did not answer within 60 s: {}",
                    daemon.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The docker CLI against this daemon; its stdout, trimmed.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.docker)
            .arg("--host")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .output()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.cli(&["rm", "--force", c]);
        }
        // SIGTERM lets dockerd stop its containerd and unmount its layers
        // before the temp dir goes.
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image holding only a static busybox and the links the test uses.
fn busybox_tar(dir: &Path, busybox: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");
    tar
}

fn is_static(path: &Path) -> bool {
    // An ELF without a PT_INTERP program header needs no loader.
    Command::new("readelf")
        .arg("-l")
        .arg(path)
        .output()
        .map(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("INTERP"))
        .unwrap_or(false)
}

#[test]
fn resolves_a_real_container() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cannot_run("dockerd needs root");
    }
    let Some(dockerd) = which("dockerd") else {
        return cannot_run("dockerd is not installed (apt-get install docker.io)");
    };
    let Some(docker) = which("docker") else {
        return cannot_run("the docker CLI is not installed (apt-get install docker.io)");
    };
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.is_file() || !is_static(&busybox) {
        return cannot_run("no static /bin/busybox (apt-get install busybox-static)");
    }
    let mut daemon = match Daemon::start(&dockerd, docker) {
        Ok(d) => d,
        Err(why) => return cannot_run(&why),
    };

    let tag = format!("sonde-test-busybox:{}", std::process::id());
    let name = format!("sonde-test-{}", std::process::id());
    let tar = busybox_tar(daemon.dir.path(), &busybox);
    daemon
        .cli(&["import", tar.to_str().unwrap(), &tag])
        .unwrap();
    daemon.containers.push(name.clone());
    let id = daemon
        .cli(&[
            "run",
            "--detach",
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            "io.kubernetes.pod.name=web-0",
            "--label",
            "io.kubernetes.pod.namespace=shop",
            &tag,
            "/bin/sleep",
            "120",
        ])
        .unwrap();
    assert!(names::is_container_id(&id), "docker run printed {id:?}");

    // The container's own cgroup path, as the sampler will see it.
    let pid = daemon
        .cli(&["inspect", "--format", "{{.State.Pid}}", &id])
        .unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find(|p| p.contains(&id))
        .unwrap_or_else(|| panic!("no cgroup of {pid} names {id}:\n{cgroup}"));
    eprintln!("container {id} runs in cgroup {path}");
    let labels = names::from_path(path);
    assert_eq!(labels.container_id.as_deref(), Some(id.as_str()), "{path}");
    assert_eq!(labels.runtime, Some("docker"), "{path}");

    let client = Docker::new(daemon.socket(), Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    let info = loop {
        let t = Instant::now();
        let got = client.get(&id);
        assert!(
            t.elapsed() < Duration::from_millis(5),
            "get took {:?}",
            t.elapsed()
        );
        if let Some(info) = got {
            break info;
        }
        assert!(Instant::now() < deadline, "Docker::get never resolved {id}");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(info.name, name);
    assert_eq!(info.image, tag);
    let mut labels = labels;
    info.apply(&mut labels);
    assert_eq!(labels.pod.as_deref(), Some("web-0"));
    assert_eq!(labels.namespace.as_deref(), Some("shop"));
    assert_eq!(labels.name.as_deref(), Some(name.as_str()));

    // A container the daemon does not have is a 404, not a failure.
    let other = "0".repeat(64);
    assert!(client.get(&other).is_none());
    std::thread::sleep(Duration::from_millis(500));
    assert!(client.get(&other).is_none());

    // The agent names the container's series from the same daemon.
    let socket = daemon.socket();
    let short = id[..12].to_string();
    let agent = common::Agent::start_with(move |c| {
        c.set("samplers.cgroup.interval", "1s")
            .set("samplers.cgroup.min_age", "0s")
            .set(
                "samplers.cgroup.include",
                common::config::array(&[format!("*{short}*")]),
            )
            .set(
                "samplers.cgroup.docker_socket",
                socket.display().to_string(),
            )
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = [
        format!("id=\"{path}\""),
        format!("container_id=\"{id}\""),
        format!("name=\"{name}\""),
        format!("image=\"{tag}\""),
        "pod=\"web-0\"".to_string(),
        "namespace=\"shop\"".to_string(),
    ];
    loop {
        let text = agent.metrics();
        let line = text
            .lines()
            .find(|l| l.starts_with("container_memory_usage_bytes{") && l.contains(&id));
        if line.is_some_and(|l| want.iter().all(|w| l.contains(w.as_str()))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never named the container: {line:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
