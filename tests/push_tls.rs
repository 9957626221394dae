//! The pusher's sinks over TLS with a client certificate and basic auth,
//! into a real Prometheus whose own web config demands both; the pullers'
//! sources against an agent that wants TLS and credentials; and SIGHUP
//! reloads of the pusher and the exporter.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::tls::{curl, htpasswd, Pki};
use common::{free_port, sample, tool, wait_for, Agent};

struct Prom(Child);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hup(child: &Child) {
    // SAFETY: kill with a valid pid and signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
}

#[test]
fn sinks_speak_mutual_tls_and_basic_auth_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "rw");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\n  client_auth_type: RequireAndVerifyClientCert\nbasic_auth_users:\n  pusher: {}\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem"),
            htpasswd("pusher", "pw")
        ),
    )
    .unwrap();
    let port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(&prom_config, "global:\n  scrape_interval: 1s\n").unwrap();
    let _prom = Prom(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", web.display()))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = [
        "--cacert",
        &pki.path("ca.pem"),
        "--cert",
        &pki.path("client.pem"),
        "--key",
        &pki.path("client.key"),
        "-u",
        "pusher:pw",
    ];
    let base = format!("https://127.0.0.1:{port}");
    wait_for("Prometheus over TLS", Duration::from_secs(60), || {
        (curl(&format!("{base}/-/ready"), &client).status == 200).then_some(())
    });
    let query = |q: &str| -> usize {
        let r = curl(&format!("{base}/api/v1/query?query={q}"), &client);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        v["data"]["result"].as_array().map_or(0, Vec::len)
    };
    let agent = Agent::start();
    let spool = dir.path().join("spool");
    let push_port = free_port();
    let push = |password: &str, with_cert: bool| {
        let cert = if with_cert {
            format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                pki.path("client.pem"),
                pki.path("client.key")
            )
        } else {
            String::new()
        };
        format!(
            "[source]\nurl = \"{}\"\ninterval = \"1s\"\n[spool]\npath = \"{}\"\n[listen]\naddress = \"127.0.0.1:{push_port}\"\n[[sinks]]\nkind = \"remote_write\"\nurl = \"{base}/api/v1/write\"\ntls_ca_file = \"{}\"\n{cert}basic_auth = {{ username = \"pusher\", password = \"{password}\" }}\n",
            agent.url(""),
            spool.display(),
            pki.path("ca.pem"),
        )
    };
    let path = dir.path().join("push.toml");
    // Start with a wrong password: Prometheus refuses (401), the spool
    // keeps the snapshots.
    std::fs::write(&path, push("wrong", true)).unwrap();
    let pusher = Agent::spawn(
        &["push", path.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "push",
    );
    let metrics = |a: &Agent| common::http(&a.url("/metrics"), &[]).text();
    wait_for(
        "retries against the wrong password",
        Duration::from_secs(20),
        || {
            let m = metrics(&pusher);
            (sample(&m, "sonde_push_retries_total", &[]).unwrap_or(0.0) > 0.0).then_some(())
        },
    );
    // Several snapshots wait in the spool (one pull a second).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(query("sonde_build_info"), 0);
    // Reload with the right password: the snapshots spooled before it go
    // through too (the never-delivered sink's start was stored).
    let before_reload = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 1.0;
    std::fs::write(&path, push("pw", true)).unwrap();
    hup(&pusher.child);
    wait_for(
        "remote-written data over mTLS + basic auth",
        Duration::from_secs(30),
        || (query("sonde_build_info") > 0).then_some(()),
    );
    wait_for(
        "the snapshots spooled before the reload",
        Duration::from_secs(30),
        || (query(&format!("sonde_build_info&time={before_reload}")) > 0).then_some(()),
    );
    let m = metrics(&pusher);
    let dropped: f64 = common::samples(&m, "sonde_push_snapshots_dropped_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        dropped, 0.0,
        "snapshots refused for credentials were dropped"
    );
    assert_eq!(
        sample(&m, "sonde_config_reloads_total", &["result=\"success\""]),
        Some(1.0)
    );
    // A config without the client certificate is valid but cannot deliver;
    // a broken one is refused and the pusher goes on.
    std::fs::write(&path, "[[sinks]\n").unwrap();
    hup(&pusher.child);
    wait_for("failed reload", Duration::from_secs(10), || {
        let m = metrics(&pusher);
        (sample(&m, "sonde_config_reloads_total", &["result=\"failure\""]) == Some(1.0))
            .then_some(())
    });
    let mut pusher = pusher;
    assert!(pusher.child.try_wait().unwrap().is_none());
}

#[test]
fn exporter_reload_switches_sources() {
    let a = Agent::start();
    let b = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.toml");
    let port = free_port();
    let config = |agent: &Agent, label: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:{port}\"\n[general]\ninterval = \"1s\"\n[[sources]]\nurl = \"{}\"\nlabels = {{ which = \"{label}\" }}\n",
            agent.url("")
        )
    };
    std::fs::write(&path, config(&a, "first")).unwrap();
    let exporter = Agent::spawn(
        &["exporter", path.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "exporter",
    );
    let text = || common::http(&exporter.url("/metrics"), &[]).text();
    // The exporter's own count, not the relayed agents' (those carry `which`).
    let own = |t: &str, result: &str| {
        common::samples(t, "sonde_config_reloads_total")
            .into_iter()
            .find(|(l, _)| !l.contains("which=") && l.contains(&format!("result=\"{result}\"")))
            .map(|(_, v)| v)
    };
    assert!(text().contains("which=\"first\""));
    std::fs::write(&path, config(&b, "second")).unwrap();
    hup(&exporter.child);
    wait_for("the new source", Duration::from_secs(10), || {
        let t = text();
        (t.contains("which=\"second\"") && !t.contains("which=\"first\"")).then_some(())
    });
    wait_for("the reload counted", Duration::from_secs(5), || {
        (own(&text(), "success") == Some(1.0)).then_some(())
    });
    std::fs::write(&path, "[general]\ninterval = \"soon\"\n").unwrap();
    hup(&exporter.child);
    wait_for("failed reload", Duration::from_secs(10), || {
        (own(&text(), "failure") == Some(1.0)).then_some(())
    });
    assert!(
        text().contains("which=\"second\""),
        "a bad reload changed the sources"
    );
}

/// The exporter and the pusher pull an agent that serves https and wants
/// credentials; a source key that names a missing file is a located error.
#[test]
fn pullers_reach_a_secured_agent() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "src");
    let token = dir.path().join("token");
    std::fs::write(&token, "agent-token\n").unwrap();
    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nbearer_token_file = \"{}\"\nbasic_auth_users = {{ puller = \"{}\" }}\n[defaults]\nenabled = false\n[samplers.load]\nenabled = true\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            token.display(),
            htpasswd("puller", "pw"),
        ),
    )
    .unwrap();
    let agent = Agent::spawn(
        &[agent_toml.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "agent",
    );
    let base = format!("https://127.0.0.1:{}", agent.port);
    let exporter_toml = dir.path().join("exporter.toml");
    std::fs::write(
        &exporter_toml,
        format!(
            "[listen]\naddress = \"127.0.0.1:0\"\n[general]\ninterval = \"1s\"\n[[sources]]\nurl = \"{base}\"\ntls_ca_file = \"{}\"\nbearer_token_file = \"{}\"\n",
            pki.path("ca.pem"),
            token.display()
        ),
    )
    .unwrap();
    let exporter = Agent::spawn(
        &["exporter", exporter_toml.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "exporter",
    );
    let text = common::http(&exporter.url("/metrics"), &[]).text();
    assert_eq!(
        sample(&text, "sonde_exporter_source_up", &[]),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("load_tasks_running"), "nothing relayed");

    let server = common::TestServer::start(|_, _| (200, vec![], vec![]));
    let push_toml = dir.path().join("push.toml");
    std::fs::write(
        &push_toml,
        format!(
            "[source]\nurl = \"{base}\"\ninterval = \"1s\"\ntls_ca_file = \"{}\"\nbasic_auth = {{ username = \"puller\", password = \"pw\" }}\n[spool]\npath = \"{}\"\n[listen]\naddress = \"127.0.0.1:0\"\n[[sinks]]\nkind = \"http\"\nurl = \"{}\"\n",
            pki.path("ca.pem"),
            dir.path().join("spool").display(),
            server.url("/in")
        ),
    )
    .unwrap();
    let _pusher = Agent::spawn(
        &["push", push_toml.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "push",
    );
    wait_for(
        "snapshots pulled over TLS with basic auth",
        Duration::from_secs(20),
        || (!server.requests("/in").is_empty()).then_some(()),
    );

    let hindsight_toml = dir.path().join("hindsight.toml");
    std::fs::write(
        &hindsight_toml,
        format!(
            "[source]\nurl = \"{base}\"\ninterval = \"1s\"\ntls_ca_file = \"{}\"\nbearer_token_file = \"{}\"\n[buffer]\npath = \"{}\"\n[dump]\noutput_dir = \"{}\"\n[listen]\naddress = \"127.0.0.1:0\"\n",
            pki.path("ca.pem"),
            token.display(),
            dir.path().join("buffer").display(),
            dir.path().join("dumps").display()
        ),
    )
    .unwrap();
    let hindsight = Agent::spawn(
        &["hindsight", hindsight_toml.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "hindsight",
    );
    wait_for(
        "hindsight pulls over TLS with a token",
        Duration::from_secs(20),
        || {
            let m = common::http(&hindsight.url("/metrics"), &[]).text();
            (sample(&m, "sonde_hindsight_pulls_total", &["result=\"ok\""]).unwrap_or(0.0) > 0.0)
                .then_some(())
        },
    );

    std::fs::write(
        &exporter_toml,
        format!("[[sources]]\nurl = \"{base}\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n"),
    )
    .unwrap();
    let out = Command::new(common::BIN)
        .arg("check")
        .arg(&exporter_toml)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("key `sources[0].tls_ca_file`"), "{err}");
}
