//! SIGHUP reload of a running agent, against the real kernel and real
//! TLS: samplers toggled, the TTL changed, the bearer token and the
//! certificate rotated (by reload and by the file changing), then broken
//! files — the process stays up, counters never go back, and every new
//! setting is live.

mod common;

use std::path::Path;
use std::time::Duration;

use common::tls::{curl, Pki};
use common::{sample, samples, total, wait_for, Agent};

struct Setup<'a> {
    ttl: &'a str,
    samplers: &'a [&'a str],
    cert: &'a Pki,
    token: &'a Path,
}

fn config(s: &Setup<'_>, port: u16) -> String {
    let mut text = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\nbearer_token_file = \"{}\"\n\n[general]\nttl = \"{}\"\n\n[defaults]\nenabled = false\n",
        s.cert.path("server.pem"),
        s.cert.path("server.key"),
        s.token.display(),
        s.ttl
    );
    for name in s.samplers {
        text.push_str(&format!("\n[samplers.{name}]\nenabled = true\n"));
    }
    text
}

fn hup(agent: &Agent) {
    // SAFETY: kill with a valid pid and signal.
    assert_eq!(
        unsafe { libc::kill(agent.child.id() as i32, libc::SIGHUP) },
        0
    );
}

fn reloads(text: &str, result: &str) -> f64 {
    sample(
        text,
        "sonde_config_reloads_total",
        &[&format!("result=\"{result}\"")],
    )
    .unwrap_or(0.0)
}

#[test]
fn reload_applies_samplers_ttl_token_and_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Pki::new(dir.path(), "a"), Pki::new(dir.path(), "b"));
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").unwrap();
    let path = dir.path().join("agent.toml");
    let port = common::free_port();
    let write = |s: &Setup<'_>| {
        std::fs::write(&path, config(s, port)).unwrap();
    };
    write(&Setup {
        ttl: "100ms",
        samplers: &["syscall", "load"],
        cert: &a,
        token: &token,
    });
    let agent = Agent::spawn(
        &[path.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "agent",
    );
    let url = format!("https://127.0.0.1:{port}/metrics");
    let get = |ca: &Pki, tok: &str| {
        curl(
            &url,
            &[
                "--cacert",
                &ca.path("ca.pem"),
                "-H",
                &format!("Authorization: Bearer {tok}"),
            ],
        )
    };
    let scrape = |ca: &Pki, tok: &str| {
        std::thread::sleep(Duration::from_millis(150));
        let r = get(ca, tok);
        assert_eq!(r.status, 200, "{}", r.stderr);
        r.body
    };
    let mut last = 0.0;
    let mut monotonic = |text: &str, step: &str| {
        let v = total(text, "syscalls_total", &[]);
        assert!(
            v >= last && v > 0.0,
            "{step}: syscalls_total went from {last} to {v}"
        );
        last = v;
    };
    let text = scrape(&a, "first");
    monotonic(&text, "start");
    assert!(!samples(&text, "load_tasks_running").is_empty());
    assert!(samples(&text, "memory_free_bytes").is_empty());
    assert_eq!(reloads(&text, "success"), 0.0);

    // 1: memory on, load off, TTL 3 s.
    write(&Setup {
        ttl: "3s",
        samplers: &["syscall", "memory"],
        cert: &a,
        token: &token,
    });
    hup(&agent);
    let text = wait_for("reload 1", Duration::from_secs(10), || {
        let t = scrape(&a, "first");
        (reloads(&t, "success") == 1.0).then_some(t)
    });
    monotonic(&text, "after toggling samplers");
    let text = wait_for("fresh snapshot", Duration::from_secs(5), || {
        let t = scrape(&a, "first");
        (!samples(&t, "memory_free_bytes").is_empty()).then_some(t)
    });
    assert!(
        samples(&text, "load_tasks_running").is_empty(),
        "load still exported after it was turned off"
    );
    // The 3 s TTL: two scrapes in a row share one refresh.
    let (x, y) = (get(&a, "first").body, get(&a, "first").body);
    assert_eq!(
        total(&x, "sonde_refreshes_total", &[]),
        total(&y, "sonde_refreshes_total", &[]),
        "the new TTL is not in force"
    );

    // 2: token and certificate rotated, TTL back to 100 ms.
    std::fs::write(&token, "second\n").unwrap();
    write(&Setup {
        ttl: "100ms",
        samplers: &["syscall", "memory"],
        cert: &b,
        token: &token,
    });
    hup(&agent);
    let text = wait_for("reload 2", Duration::from_secs(10), || {
        let r = get(&b, "second");
        (r.status == 200 && reloads(&r.body, "success") == 2.0).then_some(r.body)
    });
    monotonic(&text, "after rotating");
    assert_eq!(get(&b, "first").status, 401, "the old token still works");
    let old_ca = get(&a, "second");
    assert!(
        !old_ca.ok && old_ca.status == 0,
        "the old certificate is still served"
    );

    // 3: the token file changes with no SIGHUP: picked up within seconds.
    std::fs::write(&token, "third\n").unwrap();
    wait_for("the rotated token file", Duration::from_secs(15), || {
        (get(&b, "third").status == 200).then_some(())
    });
    assert_eq!(get(&b, "second").status, 401);

    // 4: a broken config, then an unusable certificate: both refused, the
    // running settings stay, the process lives.
    std::fs::write(&path, "[listen\nthis is not toml").unwrap();
    hup(&agent);
    let text = wait_for("failed reload 1", Duration::from_secs(10), || {
        let t = scrape(&b, "third");
        (reloads(&t, "failure") == 1.0).then_some(t)
    });
    monotonic(&text, "after a broken config");
    let garbage = dir.path().join("pki-a/server.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    write(&Setup {
        ttl: "100ms",
        samplers: &["syscall", "memory"],
        cert: &a,
        token: &token,
    });
    hup(&agent);
    let text = wait_for("failed reload 2", Duration::from_secs(10), || {
        let t = scrape(&b, "third");
        (reloads(&t, "failure") == 2.0).then_some(t)
    });
    monotonic(&text, "after a broken certificate");
    assert_eq!(reloads(&text, "success"), 2.0);
    let log: Vec<String> = agent.log.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("key `listen.tls_cert_file`")),
        "the failed reload's located error is not logged"
    );
    assert!(
        !samples(&text, "memory_free_bytes").is_empty(),
        "samplers changed by a failed reload"
    );
    let mut agent = agent;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent exited"
    );
}

/// After the privilege drop a reload cannot load BPF programs: a running
/// eBPF sampler whose options change keeps running as it was, a newly
/// enabled one is refused, both with "restart the agent", and the reload
/// counts as a failure with the rest applied.
#[test]
fn reload_after_the_privilege_drop_refuses_bpf_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let write = |extra: &str| {
        std::fs::write(
            &path,
            format!("[listen]\naddress = \"127.0.0.1:0\"\n[defaults]\nenabled = false\n[samplers.syscall]\nenabled = true\n{extra}"),
        )
        .unwrap();
    };
    write("");
    let agent = Agent::spawn(
        &[path.to_str().unwrap()],
        tempfile::tempdir().unwrap(),
        "agent",
    );
    let scrape = || {
        std::thread::sleep(Duration::from_millis(150));
        agent.metrics()
    };
    let before = total(&scrape(), "syscalls_total", &[]);
    assert!(before > 0.0);
    write(
        "latency = \"all\"\n[samplers.blockio]\nenabled = true\n[samplers.load]\nenabled = true\n",
    );
    hup(&agent);
    let text = wait_for("the refused reload", Duration::from_secs(20), || {
        let t = scrape();
        (reloads(&t, "failure") == 1.0).then_some(t)
    });
    // The procfs sampler started; the BPF ones did not load anything.
    assert!(!samples(&text, "load_tasks_running").is_empty());
    assert!(
        samples(&text, "syscall_latency_seconds_count").is_empty(),
        "syscall restarted with latency on"
    );
    let after = total(&text, "syscalls_total", &[]);
    assert!(
        after >= before,
        "syscalls_total went from {before} to {after}"
    );
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(&agent.get("/samplers").body).unwrap();
    let blockio = list.iter().find(|s| s["name"] == "blockio").unwrap();
    assert_eq!(blockio["status"], "failed", "{blockio}");
    assert!(
        blockio["reason"]
            .as_str()
            .unwrap()
            .contains("restart the agent"),
        "{blockio}"
    );
    let syscall = list.iter().find(|s| s["name"] == "syscall").unwrap();
    assert_eq!(syscall["status"], "active", "{syscall}");
    let log: Vec<String> = agent.log.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("syscall: its settings changed") && l.contains("restart the agent")),
        "no log line says why syscall kept its settings"
    );
}
