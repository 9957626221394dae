//! Child processes and a small HTTP/1.1 client for the bench.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A child process, killed on drop.
pub struct Proc {
    child: Child,
    stderr: Option<std::io::BufReader<std::process::ChildStderr>>,
}

impl Proc {
    pub fn spawn(bin: &Path, args: &[&str]) -> Result<Proc> {
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stderr = child.stderr.take().map(std::io::BufReader::new);
        Ok(Proc { child, stderr })
    }

    /// Starts a server whose output is discarded (a chatty one would block
    /// on a pipe nobody reads).
    pub fn spawn_quiet(bin: &Path, args: &[&str]) -> Result<Proc> {
        Self::quiet(Command::new(bin).args(args), bin)
    }

    /// Starts a server pinned to `cpu`, its output discarded.
    pub fn spawn_on(cpu: usize, bin: &Path, args: &[&str]) -> Result<Proc> {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(bin).args(args);
        Self::quiet(&mut c, bin)
    }

    fn quiet(c: &mut Command, bin: &Path) -> Result<Proc> {
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Proc {
            child,
            stderr: None,
        })
    }

    pub fn wait_port(&mut self, timeout: Duration) -> Result<u16> {
        use std::io::BufRead;
        let deadline = Instant::now() + timeout;
        let stderr = self.stderr.as_mut().context("no stderr")?;
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if stderr.read_line(&mut line)? == 0 {
                bail!("the agent exited before listening");
            }
            let rest = line
                .split("listening on http://127.0.0.1:")
                .nth(1)
                .or_else(|| line.split("listening on https://127.0.0.1:").nth(1));
            if let Some(rest) = rest {
                let port = rest.split('/').next().unwrap_or("").parse()?;
                // Keep draining its log so it never blocks on a full pipe.
                let mut rest = self.stderr.take().unwrap();
                std::thread::spawn(move || std::io::copy(&mut rest, &mut std::io::sink()));
                return Ok(port);
            }
        }
        bail!("the agent did not listen within {timeout:?}")
    }

    /// CPU time so far, in ns from each thread's schedstat (stat's 10 ms
    /// ticks are too coarse for a scrape that costs a millisecond).
    pub fn cpu(&self) -> Duration {
        let pid = self.child.id();
        let mut ns = 0u64;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let stat = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
                ns += stat
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Duration::from_nanos(ns)
    }

    /// Sends SIGINT and waits for the process to exit; returns its stderr.
    pub fn interrupt(mut self) -> Result<String> {
        // SAFETY: kill with our child's pid and a valid signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let st = self.child.wait()?;
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut err)?;
        }
        if !st.success() {
            bail!("exited with {st}: {err}");
        }
        Ok(err)
    }

    /// (VmRSS, VmHWM) in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (kib("VmRSS:") * 1024, kib("VmHWM:") * 1024)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub gzipped: bool,
    /// `Content-Type`, lower case.
    pub content_type: String,
}

/// One GET on a fresh connection, for polling and one-off reads.
pub fn get_once(port: u16, path: &str, gzip: bool) -> Result<HttpResponse> {
    Conn::new(port).get(path, gzip)
}

/// One GET with an `Accept` header.
pub fn get_accepting(port: u16, path: &str, accept: &str, gzip: bool) -> Result<HttpResponse> {
    Conn::new(port).try_get_with(path, gzip, &format!("Accept: {accept}\r\n"))
}

/// A keep-alive HTTP/1.1 connection, as Prometheus scrapes; reconnects once
/// when the server closed it.
pub struct Conn {
    port: u16,
    stream: Option<std::io::BufReader<TcpStream>>,
}

impl Conn {
    pub fn new(port: u16) -> Conn {
        Conn { port, stream: None }
    }

    pub fn get(&mut self, path: &str, gzip: bool) -> Result<HttpResponse> {
        match self.try_get(path, gzip) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_get(path, gzip)
            }
        }
    }

    fn try_get(&mut self, path: &str, gzip: bool) -> Result<HttpResponse> {
        self.try_get_with(path, gzip, "")
    }

    fn try_get_with(&mut self, path: &str, gzip: bool, extra: &str) -> Result<HttpResponse> {
        use std::io::BufRead;
        if self.stream.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_nodelay(true)?;
            self.stream = Some(std::io::BufReader::new(s));
        }
        let r = self.stream.as_mut().unwrap();
        let enc = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        // One write: several small ones meet Nagle and delayed ACKs (40 ms).
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{enc}{extra}\r\n");
        r.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no status")?;
        let (mut length, mut chunked, mut gzipped) = (None, false, false);
        let mut content_type = String::new();
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            if let Some(v) = l.strip_prefix("content-type:") {
                content_type = v.trim().to_string();
            }
            chunked |= l == "transfer-encoding: chunked";
            gzipped |= l == "content-encoding: gzip";
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).context("bad chunk size")?;
                let start = body.len();
                body.resize(start + n + 2, 0);
                r.read_exact(&mut body[start..])?;
                body.truncate(start + n); // drop the chunk's CRLF
                if n == 0 {
                    break;
                }
            }
        } else {
            body.resize(length.context("no content-length")?, 0);
            r.read_exact(&mut body)?;
        }
        Ok(HttpResponse {
            status,
            body,
            gzipped,
            content_type,
        })
    }
}

pub fn wait_http(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if get_once(port, "/metrics", false).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing answered on port {port} within {timeout:?}")
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// Lets the calling thread run on every CPU again.
pub fn unpin() {
    // SAFETY: a zeroed cpu_set_t with every bit set, for this thread.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        for c in 0..libc::CPU_SETSIZE as usize {
            libc::CPU_SET(c, &mut all);
        }
        libc::sched_setaffinity(0, std::mem::size_of_val(&all), &all);
    }
}
