//! Endpoint security and connection hygiene, end to end with real tools:
//! an `openssl` CA, `curl`, `htpasswd` hashes, a real Prometheus scraping
//! over TLS with credentials, and 2,000 half-open connections against an
//! agent limited to 1,024 descriptors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::tls::{curl, htpasswd, Pki};
use common::{sample, tool, wait_for, Agent};

/// An agent with only the `load` sampler and `listen` as its [listen] body.
fn agent(dir: &Path, listen: &str) -> Agent {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!("[listen]\naddress = \"127.0.0.1:0\"\n{listen}\n[defaults]\nenabled = false\n\n[samplers.load]\nenabled = true\n"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    Agent::spawn(&[config.to_str().unwrap()], tmp, "agent")
}

fn rejected(text: &str, reason: &str) -> f64 {
    sample(
        text,
        "sonde_http_requests_rejected_total",
        &[&format!("reason=\"{reason}\"")],
    )
    .unwrap_or_else(|| panic!("no sonde_http_requests_rejected_total{{reason={reason}}}"))
}

#[test]
fn https_with_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "a");
    let other = Pki::new(dir.path(), "b");
    let a = agent(
        dir.path(),
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_client_ca_file = \"{}\"\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem")
        ),
    );
    let url = format!("https://127.0.0.1:{}/metrics", a.port);
    let client = [
        "--cacert",
        &pki.path("ca.pem"),
        "--cert",
        &pki.path("client.pem"),
        "--key",
        &pki.path("client.key"),
    ];
    let ok = curl(&url, &client);
    assert_eq!(ok.status, 200, "{}", ok.stderr);
    assert!(ok.body.contains("sonde_build_info"));
    // No client certificate: the handshake is refused, no HTTP at all.
    let none = curl(&url, &["--cacert", &pki.path("ca.pem")]);
    assert!(
        !none.ok && none.status == 0,
        "answered without a client cert: {}",
        none.status
    );
    // A client certificate from another CA: refused too.
    let wrong = curl(
        &url,
        &[
            "--cacert",
            &pki.path("ca.pem"),
            "--cert",
            &other.path("client.pem"),
            "--key",
            &other.path("client.key"),
        ],
    );
    assert!(
        !wrong.ok && wrong.status == 0,
        "answered a foreign client cert"
    );
    // Plain http to the https port gets no HTTP answer.
    let plain = curl(&format!("http://127.0.0.1:{}/metrics", a.port), &[]);
    assert!(
        !plain.ok && plain.status == 0,
        "plain http answered {}",
        plain.status
    );
    // Past the TTL, so the scrape renders the counters anew.
    std::thread::sleep(Duration::from_millis(200));
    let text = curl(&url, &client).body;
    assert!(
        rejected(&text, "tls") >= 3.0,
        "handshake failures not counted"
    );
}

#[test]
fn prometheus_scrapes_over_tls_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "p");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let hash = htpasswd("prom", "pw");
    let a = agent(
        dir.path(),
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nbearer_token_file = \"{}\"\nbasic_auth_users = {{ prom = \"{hash}\" }}\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            token.display()
        ),
    );
    let target = format!("127.0.0.1:{}", a.port);
    let tls = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {}\n",
        pki.path("ca.pem")
    );
    let job = |name: &str, auth: &str| {
        format!(
            "  - job_name: {name}\n{tls}{auth}    static_configs:\n      - targets: ['{target}']\n"
        )
    };
    let scrape = [
        job(
            "bearer",
            "    authorization:\n      credentials: s3cret-token\n",
        ),
        job(
            "basic",
            "    basic_auth:\n      username: prom\n      password: pw\n",
        ),
        job(
            "wrong_bearer",
            "    authorization:\n      credentials: nope\n",
        ),
        job(
            "wrong_basic",
            "    basic_auth:\n      username: prom\n      password: nope\n",
        ),
        job("anonymous", ""),
    ]
    .concat();
    let p = Prometheus::scraping_with(&format!("scrape_configs:\n{scrape}"));
    for (job, want) in [
        ("bearer", 1.0),
        ("basic", 1.0),
        ("wrong_bearer", 0.0),
        ("wrong_basic", 0.0),
        ("anonymous", 0.0),
    ] {
        let up = wait_for(&format!("up{{job={job}}}"), Duration::from_secs(30), || {
            p.query(&format!("up{{job=\"{job}\"}}"))
        });
        assert_eq!(up, want, "job {job}");
    }
    // Prometheus got real data through TLS with each credential.
    let v = wait_for("load data via basic auth", Duration::from_secs(30), || {
        p.query("count(sonde_build_info{job=\"basic\"})")
    });
    assert_eq!(v, 1.0);
    let r = curl(
        &format!("https://{target}/metrics"),
        &["--cacert", &pki.path("ca.pem"), "-u", "prom:nope"],
    );
    assert_eq!(r.status, 401);
    assert!(r.body.is_empty(), "a 401 carries no detail: {}", r.body);
    std::thread::sleep(Duration::from_millis(200));
    let r = curl(
        &format!("https://{target}/metrics"),
        &[
            "--cacert",
            &pki.path("ca.pem"),
            "-H",
            "Authorization: Bearer s3cret-token",
        ],
    );
    assert_eq!(r.status, 200);
    assert!(rejected(&r.body, "credentials") >= 3.0);
}

#[test]
fn allow_refuses_other_client_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = agent(dir.path(), "allow = [\"127.0.0.1/32\"]\n");
    let url = narrow.url("/metrics");
    let from2 = curl(&url, &["--interface", "127.0.0.2"]);
    assert_eq!(from2.status, 403, "{}", from2.stderr);
    assert!(from2.body.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let from1 = curl(&url, &["--interface", "127.0.0.1"]);
    assert_eq!(from1.status, 200);
    assert!(rejected(&from1.body, "address") >= 1.0);
    let wide_dir = tempfile::tempdir().unwrap();
    let wide = agent(wide_dir.path(), "allow = [\"127.0.0.0/8\", \"::1/128\"]\n");
    assert_eq!(
        curl(&wide.url("/metrics"), &["--interface", "127.0.0.2"]).status,
        200
    );
}

#[test]
fn web_config_file_is_what_promtool_validates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "w");
    let hash = htpasswd("alice", "pw");
    let web = dir.path().join("web.yml");
    // Relative paths inside are from the web config's directory.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: pki-w/server.pem\n  key_file: pki-w/server.key\nbasic_auth_users:\n  alice: {hash}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ),
    )
    .unwrap();
    let check = Command::new(tool("promtool"))
        .args(["check", "web-config", web.to_str().unwrap()])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let a = agent(
        dir.path(),
        &format!("web_config_file = \"{}\"\n", web.display()),
    );
    let url = format!("https://127.0.0.1:{}/metrics", a.port);
    let ca = pki.path("ca.pem");
    assert_eq!(curl(&url, &["--cacert", &ca]).status, 401);
    let ok = curl(
        &url,
        &["--cacert", &ca, "-u", "alice:pw", "-D", "/dev/stderr"],
    );
    assert_eq!(ok.status, 200);
    assert!(
        ok.stderr
            .to_ascii_lowercase()
            .contains("x-frame-options: deny"),
        "{}",
        ok.stderr
    );
}

#[test]
fn bad_listen_files_are_located_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\ntls_cert_file = \"{}\"\ntls_key_file = \"/nonexistent/key.pem\"\nbearer_token_file = \"/nonexistent/token\"\nbasic_auth_users = {{ bob = \"plaintext\" }}\n",
            garbage.display()
        ),
    )
    .unwrap();
    for args in [vec!["check"], vec!["agent"]] {
        let out = Command::new(common::BIN)
            .args(&args)
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for key in [
            "listen.tls_cert_file",
            "listen.basic_auth_users",
            "listen.bearer_token_file",
        ] {
            assert!(
                err.contains(&format!("key `{key}`")),
                "{args:?}: {key} not named in:\n{err}"
            );
        }
        assert!(err.contains("agent.toml:"), "no location: {err}");
    }
    std::fs::write(&config, "[listen]\nallow = [\"10.0.0.0/33\"]\n").unwrap();
    let out = Command::new(common::BIN)
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("agent.toml:2: key `listen.allow"), "{err}");
}

/// Raises this process's descriptor limit so it can hold 2,000 sockets.
fn raise_nofile(n: u64) {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit reads a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

#[test]
fn slowloris_cannot_starve_metrics() {
    raise_nofile(8192);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[listen]\naddress = \"127.0.0.1:0\"\nheader_timeout = \"3s\"\n[defaults]\nenabled = false\n\n[samplers.load]\nenabled = true\n",
    )
    .unwrap();
    // systemd's default LimitNOFILE: the agent gets 1,024 descriptors.
    let mut cmd = Command::new(tool("prlimit"));
    cmd.args(["--nofile=1024:1024", common::BIN, config.to_str().unwrap()]);
    let a = Agent::spawn_command(cmd, tempfile::tempdir().unwrap(), "agent");
    let pid = a.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits.lines().any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("1024")),
        "{limits}"
    );
    let addr = format!("127.0.0.1:{}", a.port);
    let mut half_open = Vec::new();
    for _ in 0..2000 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        half_open.push(s);
    }
    let opened = Instant::now();
    for _ in 0..5 {
        let start = Instant::now();
        let r = common::http(&a.url("/metrics"), &[]);
        let took = start.elapsed();
        assert_eq!(r.status, 200);
        assert!(
            took < Duration::from_secs(1),
            "/metrics took {took:?} under slowloris"
        );
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(fds < 1024, "agent holds {fds} descriptors");
    // Every half-open connection is closed by the header timeout (3 s):
    // evicted early at the cap, or timed out.
    for s in &half_open {
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    }
    let mut open = 0;
    for s in &mut half_open {
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => {}
            Err(_) => open += 1,
        }
    }
    assert_eq!(
        open,
        0,
        "{open} half-open connections still open {:?} after opening",
        opened.elapsed()
    );
    assert!(
        opened.elapsed() < Duration::from_secs(9),
        "closing took {:?}",
        opened.elapsed()
    );
    let text = a.metrics();
    let closed = rejected(&text, "evicted") + rejected(&text, "header_timeout");
    assert!(closed >= 2000.0, "evicted + timed out = {closed}");
    assert!(rejected(&text, "header_timeout") >= 1.0);
}
