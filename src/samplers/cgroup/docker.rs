//! Container names and images from the Docker Engine API, without ever
//! stalling a refresh: [`Docker::get`] answers from a cache, and a miss
//! queues the lookup for one background thread that talks HTTP to the
//! daemon's unix socket (`GET /containers/<id>/json`).
//!
//! The client is a few dozen lines of HTTP/1.0 over `UnixStream` rather
//! than a crate: one request shape, answered by one server we know, and
//! it keeps hyper's client and its runtime out of the agent. It still
//! copes with what a server may send: a `Content-Length` body, a body
//! ended by closing the connection (dockerd's answer to HTTP/1.0), or a
//! chunked one; and it gives up past the size cap or the timeout.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::names::{is_container_id, Labels};

/// Largest response accepted: an inspect answer is a few KiB (4.3 KiB for
/// a busybox container on dockerd 20.10); a container with huge labels or
/// env may be tens of KiB.
pub const MAX_RESPONSE: usize = 1 << 20;
/// A container the daemon does not know is asked about again after this.
pub const NOT_FOUND_RETRY: Duration = Duration::from_secs(60);
/// After a failed lookup (timeout, refused, bad answer) the id waits this long.
pub const ERROR_RETRY: Duration = Duration::from_secs(10);
/// A socket found missing is looked for again after this.
pub const SOCKET_RECHECK: Duration = Duration::from_secs(30);
/// Lookups waiting at once; a miss beyond it is queued by a later `get`.
pub const QUEUE_CAP: usize = 256;
/// Cached ids at most, should `retain` never be called.
pub const MAX_ENTRIES: usize = 16384;
/// Distinct failure reasons logged at most (each once).
const MAX_LOGGED: usize = 64;

/// What Docker says about a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The container's name without the leading `/`.
    pub name: String,
    /// The image as the container was created from it (`Config.Image`).
    pub image: String,
    /// `Config.Labels`.
    pub labels: BTreeMap<String, String>,
}

/// The kubelet's names for a container it started through Docker, from the
/// labels it puts on it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kubernetes<'a> {
    pub pod: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub container: Option<&'a str>,
}

impl ContainerInfo {
    pub fn kubernetes(&self) -> Kubernetes<'_> {
        let get = |k: &str| {
            self.labels
                .get(k)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        Kubernetes {
            pod: get("io.kubernetes.pod.name"),
            namespace: get("io.kubernetes.pod.namespace"),
            container: get("io.kubernetes.container.name"),
        }
    }

    /// Fills `labels` with what Docker knows: the image, and the name, pod
    /// and namespace, the kubelet's where it set them (so `pod` becomes the
    /// pod's name, as cAdvisor's `pod` label is, replacing the path's uid).
    pub fn apply(&self, labels: &mut Labels) {
        let k = self.kubernetes();
        let name = k.container.unwrap_or(&self.name);
        if !name.is_empty() {
            labels.name = Some(name.to_string());
        }
        if !self.image.is_empty() {
            labels.image = Some(self.image.clone());
        }
        if let Some(pod) = k.pod {
            labels.pod = Some(pod.to_string());
        }
        if let Some(ns) = k.namespace {
            labels.namespace = Some(ns.to_string());
        }
    }
}

/// A non-blocking, cached view of one Docker daemon's containers.
pub struct Docker {
    shared: Arc<Shared>,
}

struct Shared {
    socket: PathBuf,
    timeout: Duration,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    cache: HashMap<String, Entry>,
    queue: VecDeque<String>,
    worker: bool,
    shutdown: bool,
    socket_present: bool,
    socket_checked: Instant,
    logged: HashSet<String>,
    /// Requests sent, for tests and debugging.
    lookups: u64,
}

enum Entry {
    Pending,
    Found(Arc<ContainerInfo>),
    Missing(Instant),
}

impl Docker {
    /// A client for the daemon at `socket`; each HTTP exchange is given up
    /// after `timeout`. A socket that does not exist makes every `get`
    /// answer `None` at once; it is looked for again every
    /// [`SOCKET_RECHECK`]. No thread starts until a lookup is needed.
    pub fn new(socket: PathBuf, timeout: Duration) -> Docker {
        let present = socket.exists();
        Docker {
            shared: Arc::new(Shared {
                socket,
                timeout,
                state: Mutex::new(State {
                    cache: HashMap::new(),
                    queue: VecDeque::new(),
                    worker: false,
                    shutdown: false,
                    socket_present: present,
                    socket_checked: Instant::now(),
                    logged: HashSet::new(),
                    lookups: 0,
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// The cached answer for `container_id` (64 hex digits), or `None`
    /// while unknown. Never waits for Docker: a miss queues a lookup on the
    /// background thread (deduplicated, bounded), and a container Docker
    /// does not know, or a failed lookup, is not asked about again until
    /// [`NOT_FOUND_RETRY`] or [`ERROR_RETRY`] has passed.
    pub fn get(&self, container_id: &str) -> Option<Arc<ContainerInfo>> {
        if !is_container_id(container_id) {
            return None;
        }
        let mut st = self.shared.lock();
        let now = Instant::now();
        match st.cache.get(container_id) {
            Some(Entry::Found(info)) => return Some(info.clone()),
            Some(Entry::Pending) => return None,
            Some(Entry::Missing(until)) if now < *until => return None,
            Some(Entry::Missing(_)) | None => {}
        }
        if !st.socket_present {
            if now.duration_since(st.socket_checked) < SOCKET_RECHECK {
                return None;
            }
            st.socket_checked = now;
            st.socket_present = self.shared.socket.exists();
            if !st.socket_present {
                return None;
            }
        }
        let known = st.cache.contains_key(container_id);
        if st.queue.len() >= QUEUE_CAP || (!known && st.cache.len() >= MAX_ENTRIES) {
            return None;
        }
        if !st.worker {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("sonde-docker".into())
                .spawn(move || shared.work());
            if let Err(e) = spawned {
                let reason = format!("cannot start the lookup thread: {e}");
                st.log_once(&self.shared.socket, reason);
                return None;
            }
            st.worker = true;
        }
        st.cache.insert(container_id.to_string(), Entry::Pending);
        st.queue.push_back(container_id.to_string());
        self.shared.wake.notify_one();
        None
    }

    /// Forgets the ids for which `live` is false (cached or still queued),
    /// so the cache holds the containers that exist.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        let mut st = self.shared.lock();
        st.cache.retain(|id, _| live(id));
        st.queue.retain(|id| live(id));
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.shared.socket
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lookup thread: one request at a time, the lock never held
    /// across I/O. Ends when its `Docker` is dropped.
    fn work(&self) {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return;
            }
            let Some(id) = st.queue.pop_front() else {
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            st.lookups += 1;
            drop(st);
            let result = inspect(&self.socket, &id, self.timeout);
            st = self.lock();
            let now = Instant::now();
            let entry = match result {
                Ok(Some(info)) => Entry::Found(Arc::new(info)),
                Ok(None) => Entry::Missing(now + NOT_FOUND_RETRY),
                Err(e) => {
                    if e.socket_gone {
                        st.socket_present = false;
                        st.socket_checked = now;
                    }
                    st.log_once(&self.socket, e.reason);
                    Entry::Missing(now + ERROR_RETRY)
                }
            };
            // An id `retain` dropped meanwhile stays dropped.
            if let Some(slot) = st.cache.get_mut(&id) {
                *slot = entry;
            }
        }
    }
}

impl State {
    /// Warns once per distinct reason (reasons carry no container id), so
    /// a daemon that is down logs one line, not one per container.
    fn log_once(&mut self, socket: &Path, reason: String) {
        if self.logged.len() < MAX_LOGGED && self.logged.insert(reason.clone()) {
            tracing::warn!(
                socket = %socket.display(),
                "docker: {reason}; container names and images stay absent until lookups succeed"
            );
        }
    }
}

#[derive(Debug)]
struct Failure {
    reason: String,
    /// The socket is not there (the daemon stopped): stop queueing lookups.
    socket_gone: bool,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            socket_gone: false,
        }
    }
}

/// `GET /containers/<id>/json`: the container, `None` for a 404.
fn inspect(socket: &Path, id: &str, timeout: Duration) -> Result<Option<ContainerInfo>, Failure> {
    let resp = exchange(socket, &format!("/containers/{id}/json"), timeout)?;
    match resp.status {
        200 => parse_inspect(&resp.body).map(Some),
        404 => Ok(None),
        status => Err(Failure::new(format!(
            "GET /containers/<id>/json answered HTTP {status}"
        ))),
    }
}

fn parse_inspect(body: &[u8]) -> Result<ContainerInfo, Failure> {
    #[derive(serde::Deserialize)]
    struct Inspect {
        #[serde(rename = "Name", default)]
        name: String,
        #[serde(rename = "Config", default)]
        config: Option<Config>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(rename = "Image", default)]
        image: Option<String>,
        #[serde(rename = "Labels", default)]
        labels: Option<BTreeMap<String, String>>,
    }
    let v: Inspect = serde_json::from_slice(body)
        .map_err(|e| Failure::new(format!("cannot parse a container's JSON: {e}")))?;
    let config = v.config.unwrap_or(Config {
        image: None,
        labels: None,
    });
    Ok(ContainerInfo {
        name: v.name.strip_prefix('/').unwrap_or(&v.name).to_string(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default(),
    })
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

/// One HTTP/1.0 GET over a fresh connection, given up after `timeout` in
/// all (not per read: a server trickling bytes cannot hold the thread).
fn exchange(socket: &Path, target: &str, timeout: Duration) -> Result<Response, Failure> {
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket).map_err(|e| Failure {
        socket_gone: e.kind() == ErrorKind::NotFound,
        reason: format!("cannot connect: {e}"),
    })?;
    let io = |what: &str, e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            Failure::new(format!("no answer within {timeout:?}"))
        }
        _ => Failure::new(format!("{what}: {e}")),
    };
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| io("set timeout", e))?;
    let request = format!("GET {target} HTTP/1.0\r\nHost: docker\r\nUser-Agent: sonde\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io("send", e))?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(resp) = parse_response(&buf, false)? {
            return Ok(resp);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(format!("no answer within {timeout:?}")));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| io("set timeout", e))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return parse_response(&buf, true)?
                    .ok_or_else(|| Failure::new("connection closed mid-answer"))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io("receive", e)),
        }
        if buf.len() > MAX_RESPONSE {
            return Err(Failure::new(format!(
                "answer larger than {MAX_RESPONSE} bytes refused"
            )));
        }
    }
}

/// The response in `buf` once it is whole; `eof` when the server has
/// closed (which ends a body without length or chunking).
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, Failure> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if eof {
            Err(Failure::new(
                "connection closed before the answer's headers",
            ))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| Failure::new("answer headers are not UTF-8"))?;
    let body = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| Failure::new(format!("not an HTTP status line: {:.40}", status_line)))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| Failure::new("bad Content-Length"))?;
            if n > MAX_RESPONSE {
                return Err(Failure::new(format!(
                    "answer larger than {MAX_RESPONSE} bytes refused"
                )));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        match dechunk(body)? {
            Some(body) => body,
            None if eof => return Err(Failure::new("connection closed mid-chunk")),
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if body.len() >= n {
            body[..n].to_vec()
        } else if eof {
            return Err(Failure::new(
                "connection closed before Content-Length bytes",
            ));
        } else {
            return Ok(None);
        }
    } else if eof {
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response { status, body }))
}

/// A chunked body decoded, `None` while incomplete (trailers ignored).
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_line = std::str::from_utf8(&rest[..eol]).unwrap_or("");
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| Failure::new(format!("bad chunk size {size_hex:.20}")))?;
        if size > MAX_RESPONSE {
            return Err(Failure::new(format!(
                "answer larger than {MAX_RESPONSE} bytes refused"
            )));
        }
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err(Failure::new("chunk not followed by CRLF"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
