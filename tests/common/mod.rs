//! Helpers shared by the integration tests: run the real `sonde` binary,
//! talk HTTP to it, and find the real tools the tests need.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod cgroup;
pub mod config;
pub mod prometheus;
pub mod rezolus;
pub mod tls;
pub mod victoria;

pub use config::Config;

pub const BIN: &str = env!("CARGO_BIN_EXE_sonde");

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The path of a tool the test needs. Missing tools fail the test (with how
/// to get them) rather than skip it: `cargo xtask test` installs them.
pub fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("`{name}` is not installed; `cargo xtask test` installs it (Debian package prometheus)"))
}

/// Whether `name` is an executable on PATH.
pub fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// The repo's agent config with `[listen] address` moved to an ephemeral
/// port, then edited by `edit`, written to `dir`/agent.toml.
pub fn agent_config(dir: &Path, edit: impl Fn(Config) -> Config) -> PathBuf {
    let config = edit(Config::repo("agent").set("listen.address", "127.0.0.1:0"));
    let path = dir.join("agent.toml");
    std::fs::write(&path, config.text()).unwrap();
    path
}

/// A running agent, killed on drop.
pub struct Agent {
    pub child: Child,
    pub port: u16,
    pub log: mpsc::Receiver<String>,
    pub _dir: tempfile::TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with(|c| c)
    }

    /// Starts the agent on an edited copy of config/agent.toml and waits
    /// for its "listening on" line.
    pub fn start_with(edit: impl Fn(Config) -> Config) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let config = agent_config(dir.path(), edit);
        Agent::spawn(&[config.to_str().unwrap()], dir, "agent")
    }

    /// Starts `sonde exporter` on `config` (TOML text).
    pub fn exporter(config: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exporter.toml");
        std::fs::write(&path, config).unwrap();
        Agent::spawn(&["exporter", path.to_str().unwrap()], dir, "exporter")
    }

    /// Runs `sonde ARGS` (any mode) and waits for "listening on".
    pub fn spawn(args: &[&str], dir: tempfile::TempDir, tag: &'static str) -> Agent {
        Agent::spawn_env(args, &[], dir, tag)
    }

    /// [`Agent::spawn`] with extra environment variables.
    pub fn spawn_env(
        args: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        tag: &'static str,
    ) -> Agent {
        let mut cmd = Command::new(BIN);
        cmd.args(args).envs(env.iter().copied());
        Agent::spawn_command(cmd, dir, tag)
    }

    /// Runs `argv` (a wrapper such as `unshare`, then `sonde ARGS`) and
    /// waits for "listening on".
    pub fn spawn_program(argv: &[&str], dir: tempfile::TempDir, tag: &'static str) -> Agent {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]);
        Agent::spawn_command(cmd, dir, tag)
    }

    /// Runs `cmd` (which execs sonde, e.g. through `prlimit`) and waits
    /// for "listening on".
    pub fn spawn_command(mut cmd: Command, dir: tempfile::TempDir, tag: &'static str) -> Agent {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sonde");
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) => {
                    let rest = line
                        .split("listening on http://127.0.0.1:")
                        .nth(1)
                        .or_else(|| line.split("listening on https://127.0.0.1:").nth(1));
                    if let Some(rest) = rest {
                        let port = rest.split('/').next().unwrap().parse().unwrap();
                        return Agent {
                            child,
                            port,
                            log,
                            _dir: dir,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{tag} did not start listening within 20 s");
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> Response {
        http(&self.url(path), &[])
    }

    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A header's value, its name matched without regard to case.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A GET (or other method) with extra headers, any status accepted.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = ureq::request(method, url).timeout(Duration::from_secs(10));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|k| {
            let v = resp.header(&k).unwrap_or("").to_string();
            (k, v)
        })
        .collect();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    Response {
        status,
        headers,
        body,
    }
}

pub fn http(url: &str, headers: &[(&str, &str)]) -> Response {
    request("GET", url, headers)
}

/// Runs `promtool check metrics` on `text` and returns its complaints.
pub fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), msg)
}

/// The value of the first sample of `metric` whose labels contain `labels`
/// (e.g. `state="user"`), from Prometheus text.
pub fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let name = series.split('{').next()?;
        (name == metric && labels.iter().all(|lab| series.contains(lab)))
            .then(|| value.parse().ok())?
    })
}

/// Every sample of `metric`: (label string, value).
pub fn samples(text: &str, metric: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            (name == metric).then(|| {
                (
                    labels.trim_end_matches('}').to_string(),
                    value.parse().unwrap(),
                )
            })
        })
        .collect()
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn mem_total_bytes() -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024.0
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Peak resident memory of a process, in bytes (VmHWM).
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A request a [`TestServer`] received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// A real HTTP/1.1 server on loopback for faults that cannot be made real
/// (an upstream answering 503 or 400 on purpose). It records every request
/// and answers with `respond(request, nth request to that path)`:
/// (status, extra headers, body).
pub struct TestServer {
    pub port: u16,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

type Respond = dyn Fn(&Received, usize) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

impl TestServer {
    pub fn start(
        respond: impl Fn(&Received, usize) -> (u16, Vec<(String, String)>, Vec<u8>)
            + Send
            + Sync
            + 'static,
    ) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Received>::new()));
        let rec = std::sync::Arc::clone(&received);
        let respond: std::sync::Arc<Respond> = std::sync::Arc::new(respond);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let rec = std::sync::Arc::clone(&rec);
                let respond = std::sync::Arc::clone(&respond);
                std::thread::spawn(move || {
                    let _ = serve_one(conn, &rec, &*respond);
                });
            }
        });
        TestServer { port, received }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self, path: &str) -> Vec<Received> {
        let all = self.received.lock().unwrap();
        all.iter().filter(|r| r.path == path).cloned().collect()
    }
}

fn serve_one(
    conn: std::net::TcpStream,
    rec: &std::sync::Mutex<Vec<Received>>,
    respond: &Respond,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = find_header(&headers, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let req = Received {
        method,
        path,
        headers,
        body,
    };
    let nth = {
        let mut all = rec.lock().unwrap();
        let nth = all.iter().filter(|r| r.path == req.path).count();
        all.push(req.clone());
        nth
    };
    let (status, extra, body) = respond(&req, nth);
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    let mut conn = conn;
    conn.write_all(out.as_bytes())?;
    conn.write_all(&body)
}

/// eBPF tests need root. Under CI=true a test that cannot run fails; else
/// it says loudly that it did not run.
pub fn bpf_or_skip() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "eBPF tests need root (CI=true)"
    );
    eprintln!("SKIPPED: eBPF tests need root");
    false
}

/// The agent with every sampler disabled but `samplers`, its config then
/// edited by `edit`. Each listed sampler must start: a BPF load failure is
/// a test failure.
pub fn agent_with_config(samplers: &[&str], edit: impl Fn(Config) -> Config) -> Agent {
    let wanted: Vec<String> = samplers.iter().map(|s| s.to_string()).collect();
    let agent = Agent::start_with(move |c| edit(only_samplers(c, &wanted)));
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&agent.get("/samplers").body).unwrap();
    for s in &list {
        if samplers.iter().any(|n| s["name"] == *n) {
            assert_eq!(s["status"], "active", "sampler did not start: {s}");
        }
    }
    agent
}

/// config/agent.toml with every sampler disabled but `wanted`.
fn only_samplers(c: Config, wanted: &[String]) -> Config {
    let mut c = c.set("defaults.enabled", false);
    // Turn the others off in their own sections too: each says
    // `enabled = true`, which would otherwise win over [defaults].
    for name in c.tables("samplers") {
        let enabled = format!("samplers.{name}.enabled");
        let on = c.get(&enabled).and_then(|v| v.as_bool()) == Some(true);
        if on && !wanted.contains(&name) {
            c = c.set(&enabled, false);
        }
    }
    c
}

/// The agent with every sampler disabled but `samplers`.
pub fn agent_with(samplers: &[&str]) -> Agent {
    agent_with_config(samplers, |c| c)
}

/// Sum of every sample of `metric` whose labels contain all of `labels`.
pub fn total(text: &str, metric: &str, labels: &[&str]) -> f64 {
    samples(text, metric)
        .iter()
        .filter(|(l, _)| labels.iter().all(|want| l.contains(want)))
        .map(|(_, v)| v)
        .sum()
}

/// Scrapes until the TTL has passed, so the snapshot is fresh.
pub fn scrape(agent: &Agent) -> String {
    std::thread::sleep(Duration::from_millis(150));
    agent.metrics()
}

/// Issues `n` getppid syscalls: the workload the syscall counters are
/// checked against (op "query").
pub fn getppid_calls(n: u64) {
    for _ in 0..n {
        // SAFETY: getppid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
}

/// The agent's figures, read by `agent`, taken while the kernel's own count
/// `kernel` stood still: equal from 10 ms before the agent's read to 10 ms
/// after it, so nothing was counted in between and the agent's figures
/// must equal it. Quiet on both sides, because an event the agent counts
/// at its tracepoint reaches the kernel's tally a little later: a count
/// caught half-way before or after the read would differ. Retries while
/// the machine is busy.
pub fn stable<K: PartialEq + std::fmt::Debug>(
    mut kernel: impl FnMut() -> K,
    mut agent: impl FnMut() -> String,
) -> (K, String) {
    let quiet = Duration::from_millis(10);
    let mut last = None;
    for _ in 0..200 {
        let early = kernel();
        std::thread::sleep(quiet);
        let before = kernel();
        if early != before {
            last = Some((early, before));
            continue;
        }
        let text = agent();
        let after = kernel();
        std::thread::sleep(quiet);
        let late = kernel();
        if before == after && after == late {
            return (late, text);
        }
        last = Some((before, late));
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the kernel's count never stood still while the agent read it: {last:?}");
}

/// The config `agent_with_config` would start the agent with.
pub fn only_samplers_config(
    dir: &Path,
    samplers: &[&str],
    edit: impl Fn(Config) -> Config,
) -> PathBuf {
    let wanted: Vec<String> = samplers.iter().map(|s| s.to_string()).collect();
    agent_config(dir, move |c| edit(only_samplers(c, &wanted)))
}

/// `sonde --once` with only `samplers`: one refresh printed, no socket (so
/// no TCP traffic of its own, unlike a scrape).
pub fn once_with(samplers: &[&str], edit: impl Fn(Config) -> Config) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = only_samplers_config(dir.path(), samplers, edit);
    let out = Command::new(BIN)
        .arg("--once")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sonde --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Makes `cmd` move itself into the cgroups whose `cgroup.procs` files are
/// `procs` between fork and exec, so everything it runs is counted there.
pub fn join_cgroups_before_exec(cmd: &mut Command, procs: &[PathBuf]) {
    use std::os::unix::process::CommandExt as _;
    let procs: Vec<std::ffi::CString> = procs
        .iter()
        .map(|p| std::ffi::CString::new(p.to_str().unwrap()).unwrap())
        .collect();
    // SAFETY: only async-signal-safe work between fork and exec:
    // open/write/close of paths prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for p in &procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0\n".as_ptr().cast(), 2) == 2;
                libc::close(fd);
                if !ok {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `sonde record` of `agent` into `out` for as long as `during` runs (the
/// first rows are written before it starts).
pub fn record<T>(agent: &Agent, out: &Path, during: impl FnOnce() -> T) -> T {
    let rec = Command::new(BIN)
        .args(["record", &agent.url(""), "-o", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let r = during();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let o = rec.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    r
}
