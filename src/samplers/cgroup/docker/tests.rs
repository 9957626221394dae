//! The client against real HTTP servers on unix sockets in a temp dir,
//! answering as dockerd does (and as it might): whole, chunked, too large,
//! not found, or not at all.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use super::*;

const ID: &str = "b1b26b2a6a724dd08cf1f0faaa832bd82be3df017f69bccfe2281ba7c09b5b16";
const ID2: &str = "73051af271105c07e1f493b34856a77e665e3b0b4fc72f76c807dfbffeb881bd";

/// A trimmed `docker inspect` answer (dockerd 20.10's field names).
fn inspect_json(name: &str) -> String {
    format!(
        r#"{{"Id":"{ID}","Created":"2026-11-28T21:32:08Z","Path":"/bin/sleep","Args":["60"],
"State":{{"Status":"running","Running":true,"Pid":9512}},"Name":"/{name}",
"Config":{{"Hostname":"b1b26b2a6a72","Env":["PATH=/bin"],"Cmd":["/bin/sleep","60"],
"Image":"sonde-busybox:test","Labels":{{"io.kubernetes.pod.name":"web-0",
"io.kubernetes.pod.namespace":"shop","io.kubernetes.container.name":"nginx"}}}},
"NetworkSettings":{{"Networks":{{}}}}}}"#
    )
}

enum Reply {
    Bytes(Vec<u8>),
    /// Chunks written with a pause between them.
    Pieces(Vec<Vec<u8>>),
    /// Read the request, never answer; wait for the client to give up.
    Hang,
}

struct Server {
    _dir: tempfile::TempDir,
    path: PathBuf,
    targets: Arc<Mutex<Vec<String>>>,
    /// When each hung connection was closed by the client.
    gave_up: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(reply: fn(&str) -> Reply) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let gave_up = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, g, s) = (targets.clone(), gave_up.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let (t, g) = (t.clone(), g.clone());
                thread::spawn(move || {
                    // Bounded: no connection outlives ten seconds.
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut req = Vec::new();
                    let mut b = [0u8; 1024];
                    while find(&req, b"\r\n\r\n").is_none() {
                        match conn.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&b[..n]),
                        }
                    }
                    let req = String::from_utf8(req).unwrap();
                    let target = req.split(' ').nth(1).unwrap().to_string();
                    assert!(req.starts_with("GET /containers/"), "{req}");
                    assert!(req.contains("\r\nHost: docker\r\n"), "{req}");
                    t.lock().unwrap().push(target.clone());
                    match reply(&target) {
                        Reply::Bytes(bytes) => {
                            let _ = conn.write_all(&bytes);
                        }
                        Reply::Pieces(pieces) => {
                            for p in pieces {
                                if conn.write_all(&p).is_err() {
                                    return;
                                }
                                thread::sleep(Duration::from_millis(20));
                            }
                        }
                        Reply::Hang => {
                            // Returns 0 when the client closes its end.
                            if let Ok(0) = conn.read(&mut b) {
                                g.lock().unwrap().push(Instant::now());
                            }
                        }
                    }
                });
            }
        });
        Server {
            _dir: dir,
            path,
            targets,
            gave_up,
            stop,
        }
    }

    fn asked(&self, id: &str) -> usize {
        let want = format!("/containers/{id}/json");
        self.targets
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t == want)
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
    }
}

/// Calls `get` until it answers or five seconds pass.
fn poll(docker: &Docker, id: &str) -> Option<Arc<ContainerInfo>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(info) = docker.get(id) {
            return Some(info);
        }
        thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Waits until no lookup for `id` is pending.
fn settle(docker: &Docker, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(docker.shared.lock().cache.get(id), Some(Entry::Pending)) {
        assert!(Instant::now() < deadline, "lookup of {id} never finished");
        thread::sleep(Duration::from_millis(5));
    }
}

fn logged(docker: &Docker) -> Vec<String> {
    docker.shared.lock().logged.iter().cloned().collect()
}

fn check_info(info: &ContainerInfo) {
    assert_eq!(info.name, "web");
    assert_eq!(info.image, "sonde-busybox:test");
    assert_eq!(info.labels.len(), 3);
    let k = info.kubernetes();
    assert_eq!(
        (k.pod, k.namespace, k.container),
        (Some("web-0"), Some("shop"), Some("nginx"))
    );
    let mut labels = super::super::names::from_path(&format!(
        "/kubepods/burstable/pod8712f785-1a3e-41ec-a00b-e2dcc77431cb/{ID}"
    ));
    info.apply(&mut labels);
    assert_eq!(labels.container_id.as_deref(), Some(ID));
    assert_eq!(labels.name.as_deref(), Some("nginx"));
    assert_eq!(labels.image.as_deref(), Some("sonde-busybox:test"));
    assert_eq!(labels.pod.as_deref(), Some("web-0"));
    assert_eq!(labels.namespace.as_deref(), Some("shop"));
}

#[test]
fn found_with_content_length() {
    let server = Server::start(|_| {
        let body = inspect_json("web");
        Reply::Bytes(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    });
    let docker = Docker::new(server.path.clone(), Duration::from_secs(2));
    assert!(docker.get(ID).is_none(), "the first get only queues");
    check_info(&poll(&docker, ID).expect("never resolved"));
    // Cached: no second request.
    for _ in 0..100 {
        assert!(docker.get(ID).is_some());
    }
    assert_eq!(server.asked(ID), 1);
    // Gone containers are forgotten.
    docker.retain(|id| id != ID);
    assert!(docker.shared.lock().cache.is_empty());
}

#[test]
fn found_with_close_delimited_body() {
    // dockerd's answer to HTTP/1.0: no length, the close ends the body.
    let server = Server::start(|_| {
        Reply::Pieces(vec![
            b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n".to_vec(),
            format!(
                "Server: Docker/20.10.24+dfsg1 (linux)\r\n\r\n{}",
                inspect_json("web")
            )
            .into_bytes(),
        ])
    });
    let docker = Docker::new(server.path.clone(), Duration::from_secs(2));
    check_info(&poll(&docker, ID).expect("never resolved"));
}

#[test]
fn chunked() {
    let server = Server::start(|_| {
        let body = inspect_json("web").into_bytes();
        let (a, b) = body.split_at(100);
        let mut pieces = vec![b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()];
        pieces.push(format!("{:x};ext=1\r\n", a.len()).into_bytes());
        pieces.push([a, b"\r\n"].concat());
        pieces.push([format!("{:X}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat());
        pieces.push(b"0\r\nX-Trailer: y\r\n\r\n".to_vec());
        Reply::Pieces(pieces)
    });
    let docker = Docker::new(server.path.clone(), Duration::from_secs(2));
    check_info(&poll(&docker, ID).expect("never resolved"));
}

#[test]
fn not_found_is_not_asked_again() {
    let server = Server::start(|_| {
        let body = format!(r#"{{"message":"No such container: {ID}"}}"#);
        Reply::Bytes(
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    });
    let docker = Docker::new(server.path.clone(), Duration::from_secs(2));
    assert!(docker.get(ID).is_none());
    settle(&docker, ID);
    for _ in 0..200 {
        assert!(docker.get(ID).is_none());
    }
    thread::sleep(Duration::from_millis(50));
    assert_eq!(server.asked(ID), 1);
    assert!(
        matches!(docker.shared.lock().cache.get(ID), Some(Entry::Missing(t)) if *t > Instant::now() + NOT_FOUND_RETRY - Duration::from_secs(5))
    );
    assert!(
        logged(&docker).is_empty(),
        "a 404 is an answer, not a failure: {:?}",
        logged(&docker)
    );
}

#[test]
fn a_hung_daemon_never_stalls_get() {
    let server = Server::start(|_| Reply::Hang);
    let timeout = Duration::from_millis(400);
    let docker = Docker::new(server.path.clone(), timeout);
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    // While the first lookup hangs: every get answers at once, the id is
    // asked about once, and other ids only queue.
    while start.elapsed() < timeout / 2 {
        for id in [ID, ID2] {
            let t = Instant::now();
            assert!(docker.get(id).is_none());
            slowest = slowest.max(t.elapsed());
            calls += 1;
        }
        thread::sleep(Duration::from_micros(200));
    }
    assert!(
        slowest < Duration::from_millis(1),
        "slowest get of {calls}: {slowest:?}"
    );
    assert_eq!(server.asked(ID), 1);
    assert_eq!(server.asked(ID2), 0, "one lookup at a time");
    // The worker gives up at the timeout, then asks about the next id.
    settle(&docker, ID);
    let gave_up = loop {
        if let Some(t) = server.gave_up.lock().unwrap().first() {
            break *t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the client never closed the hung connection"
        );
        thread::sleep(Duration::from_millis(5));
    };
    let waited = gave_up.duration_since(start);
    assert!(
        waited >= timeout - Duration::from_millis(50)
            && waited < timeout + Duration::from_millis(500),
        "gave up after {waited:?}"
    );
    assert!(
        logged(&docker)
            .iter()
            .any(|r| r.contains("no answer within")),
        "{:?}",
        logged(&docker)
    );
    settle(&docker, ID2);
    assert_eq!(server.asked(ID2), 1);
    // One reason, logged once, though two containers failed.
    assert_eq!(logged(&docker).len(), 1, "{:?}", logged(&docker));
    // Failed ids wait ERROR_RETRY before being asked again.
    assert!(docker.get(ID).is_none());
    assert_eq!(docker.shared.lock().queue.len(), 0);
}

#[test]
fn the_queue_is_bounded() {
    let server = Server::start(|_| Reply::Hang);
    let docker = Docker::new(server.path.clone(), Duration::from_secs(2));
    for i in 0..QUEUE_CAP + 100 {
        assert!(docker.get(&format!("{i:064x}")).is_none());
    }
    let st = docker.shared.lock();
    assert!(st.queue.len() <= QUEUE_CAP);
    assert!(st.cache.len() <= QUEUE_CAP + 1);
}

#[test]
fn missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let docker = Docker::new(dir.path().join("docker.sock"), Duration::from_secs(2));
    let start = Instant::now();
    for _ in 0..1000 {
        assert!(docker.get(ID).is_none());
    }
    assert!(
        start.elapsed() < Duration::from_millis(50),
        "{:?}",
        start.elapsed()
    );
    let st = docker.shared.lock();
    assert!(!st.worker, "no thread for a socket that is not there");
    assert!(st.cache.is_empty() && st.queue.is_empty());
}

#[test]
fn malformed_ids_are_not_sent() {
    let server = Server::start(|_| Reply::Hang);
    let docker = Docker::new(server.path.clone(), Duration::from_secs(2));
    for id in [
        "",
        "../../info",
        &ID[..12],
        &ID.to_uppercase(),
        &format!("{ID}0"),
    ] {
        assert!(docker.get(id).is_none());
    }
    assert!(!docker.shared.lock().worker);
}

#[test]
fn oversized_answers_are_refused() {
    fn big(_: &str) -> Reply {
        // A body past the cap, length unannounced.
        let body = format!(
            r#"{{"Name":"/web","Pad":"{}"}}"#,
            "x".repeat(MAX_RESPONSE + 10)
        );
        Reply::Bytes(format!("HTTP/1.0 200 OK\r\n\r\n{body}").into_bytes())
    }
    fn announced(_: &str) -> Reply {
        Reply::Bytes(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{{",
                2 * MAX_RESPONSE
            )
            .into_bytes(),
        )
    }
    for reply in [big as fn(&str) -> Reply, announced] {
        let server = Server::start(reply);
        let docker = Docker::new(server.path.clone(), Duration::from_secs(2));
        assert!(docker.get(ID).is_none());
        settle(&docker, ID);
        assert!(docker.get(ID).is_none());
        assert!(
            logged(&docker).iter().any(|r| r.contains("larger than")),
            "{:?}",
            logged(&docker)
        );
    }
}

#[test]
fn server_errors_and_garbage() {
    for (answer, reason) in [
        (
            &b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}"[..],
            "HTTP 500",
        ),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.0 200 OK\r\n\r\n{not json", "cannot parse"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
            "before Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "bad chunk size",
        ),
        (b"HTTP/1.1 200 OK\r\nContent", "before the answer's headers"),
    ] {
        assert_eq!(
            parse_response(answer, true)
                .and_then(|r| match r {
                    Some(r) if r.status == 200 => parse_inspect(&r.body).map(|_| ()),
                    Some(r) => Err(Failure::new(format!("HTTP {}", r.status))),
                    None => Ok(()),
                })
                .map_err(|e| e.reason.contains(reason)),
            Err(true),
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
    // Incomplete answers wait for more rather than fail.
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}", false)
            .unwrap()
            .is_none()
    );
    assert!(parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}",
        false
    )
    .unwrap()
    .is_none());
    assert_eq!(dechunk(b"2\r\n{}\r\n0\r\n\r\n").unwrap().unwrap(), b"{}");
}

#[test]
fn null_config_and_labels() {
    let info = parse_inspect(br#"{"Name":"/x","Config":{"Image":"i","Labels":null}}"#).unwrap();
    assert_eq!(
        (info.name.as_str(), info.image.as_str(), info.labels.len()),
        ("x", "i", 0)
    );
    let info = parse_inspect(br#"{"Name":"/x","Config":null}"#).unwrap();
    assert_eq!(info.kubernetes(), Kubernetes::default());
    let mut labels = Labels::default();
    info.apply(&mut labels);
    assert_eq!((labels.name.as_deref(), labels.image), (Some("x"), None));
}
