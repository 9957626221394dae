//! Bad configuration is reported clearly: file, key, line, exit code 2.

mod common;

use std::process::Command;

use common::*;

struct Outcome {
    code: Option<i32>,
    stderr: String,
    stdout: String,
}

fn sonde(args: &[&str]) -> Outcome {
    let out = Command::new(BIN).args(args).output().unwrap();
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Writes `text` to a temp file and runs `sonde check` and `sonde` (agent)
/// on it: both must exit 2 and print `file:line: key `key`: ...`.
fn assert_rejected(text: &str, key: &str, line: usize, message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap();
    for args in [vec!["check", p], vec![p], vec!["--once", p]] {
        let o = sonde(&args);
        assert_eq!(
            o.code,
            Some(2),
            "sonde {args:?} must exit 2; stderr:\n{}",
            o.stderr
        );
        let expected = format!("{p}:{line}: key `{key}`: ");
        let found = o.stderr.lines().find(|l| l.starts_with(&expected));
        let found =
            found.unwrap_or_else(|| panic!("no line starting with {expected:?} in:\n{}", o.stderr));
        assert!(
            found.contains(message),
            "{found:?} should mention {message:?}"
        );
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    }
}

#[test]
fn unknown_section() {
    assert_rejected(
        "[general]\nttl = \"1s\"\n\n[sampler]\nx = 1\n",
        "sampler",
        4,
        "unknown section or key `sampler`",
    );
}

#[test]
fn unknown_key() {
    assert_rejected(
        "[general]\nttl = \"1s\"\nlisten_port = 80\n",
        "general.listen_port",
        3,
        "unknown field `listen_port`",
    );
}

#[test]
fn unknown_sampler_name() {
    assert_rejected(
        "[samplers.cpux]\nenabled = true\n",
        "samplers.cpux",
        1,
        "unknown sampler `cpux`, known samplers: blockio, cgroup, cpu, cpu_events,",
    );
}

#[test]
fn unknown_sampler_option() {
    assert_rejected(
        "[samplers.diskstats]\nexclud = []\n",
        "samplers.diskstats.exclud",
        2,
        "unknown field `exclud`",
    );
}

#[test]
fn wrong_type() {
    assert_rejected(
        "[defaults]\nenabled = \"yes\"\n",
        "defaults.enabled",
        2,
        "expected a boolean",
    );
    assert_rejected(
        "[samplers.cpu]\n\nenabled = 1\n",
        "samplers.cpu.enabled",
        3,
        "expected true or false",
    );
}

#[test]
fn bad_duration() {
    assert_rejected(
        "[general]\nttl = \"10 parsecs\"\n",
        "general.ttl",
        2,
        "invalid duration `10 parsecs`",
    );
    assert_rejected(
        "[general]\nttl = \"0s\"\n",
        "general.ttl",
        2,
        "greater than zero",
    );
}

#[test]
fn inverted_histogram_range() {
    assert_rejected(
        "[prometheus]\nhistogram_time_min = \"1s\"\nhistogram_time_max = \"1ms\"\n",
        "prometheus.histogram_time_max",
        3,
        "must be larger than the matching _min",
    );
}

#[test]
fn unparsable_listen_address() {
    assert_rejected(
        "[listen]\naddress = \"localhost:http\"\n",
        "listen.address",
        2,
        "invalid listen address",
    );
    assert_rejected(
        "[listen]\naddress = \"127.0.0.1:99999\"\n",
        "listen.address",
        2,
        "invalid listen address",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[general]\nttl = \"x\"\ncolour = 1\n[log]\nlevel = \"loud\"\n[samplers.nope]\n",
    )
    .unwrap();
    let o = sonde(&["check", path.to_str().unwrap()]);
    assert_eq!(o.code, Some(2));
    for key in [
        "general.ttl",
        "general.colour",
        "log.level",
        "samplers.nope",
    ] {
        assert!(
            o.stderr.contains(&format!("key `{key}`")),
            "{key} missing from:\n{}",
            o.stderr
        );
    }
    assert!(o.stderr.contains("4 problems"), "{}", o.stderr);
}

#[test]
fn toml_syntax_error_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[general]\nttl = \"1s\"\nlisten = \n").unwrap();
    let o = sonde(&["check", path.to_str().unwrap()]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr
            .starts_with(&format!("{}:3: invalid TOML", path.display())),
        "{}",
        o.stderr
    );
}

#[test]
fn missing_file() {
    let o = sonde(&["check", "/nonexistent/agent.toml"]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr
            .contains("/nonexistent/agent.toml: cannot read the file"),
        "{}",
        o.stderr
    );
}

#[test]
fn shipped_agent_config_is_valid() {
    let o = sonde(&["check", repo().join("config/agent.toml").to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("valid agent config"));
}

#[test]
fn check_understands_exporter_and_push_configs() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = dir.path().join("exporter.toml");
    std::fs::write(&exporter, "[general]\ninterval = \"1s\"\n[[sources]]\nurl = \"http://127.0.0.1:4251\"\n[prometheus]\npercentiles = [0.5, 1.5]\n").unwrap();
    let o = sonde(&["check", exporter.to_str().unwrap()]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr
            .contains(":6: key `prometheus.percentiles[1]`: 1.5 is not a quantile"),
        "{}",
        o.stderr
    );

    let push = dir.path().join("push.toml");
    std::fs::write(&push, "[source]\nurl = \"http://127.0.0.1:4251\"\n[spool]\nmax_bytes = \"12 parsecs\"\n[[sinks]]\nkind = \"remote_write\"\nurl = \"ftp://x\"\n").unwrap();
    let o = sonde(&["check", push.to_str().unwrap()]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains(":4: key `spool.max_bytes`: invalid size"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains(":7: key `sinks[0].url`: invalid URL `ftp://x`"),
        "{}",
        o.stderr
    );

    std::fs::write(
        &push,
        "[[sinks]]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/x\"\nformat = \"json\"\n",
    )
    .unwrap();
    let o = sonde(&["check", push.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("valid push config"));
}

#[test]
fn shipped_exporter_config_is_valid_and_the_exporter_rejects_bad_ones() {
    let o = sonde(&[
        "check",
        repo().join("config/exporter.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("valid exporter config"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exporter.toml");
    std::fs::write(
        &path,
        "[general]\ninterval = \"10ms\"\n[[sources]]\nurl = \"http://a:1\"\n[[sources]]\nurl = \"http://a:1/\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let o = sonde(&["exporter", p]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!(
            "{p}:2: key `general.interval`: must be at least 100ms"
        )),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains(&format!(
            "{p}:6: key `sources[1].url`: `http://a:1/` is listed twice"
        )),
        "{}",
        o.stderr
    );
}

#[test]
fn port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path(), |c| {
        c.set("listen.address", format!("127.0.0.1:{port}"))
    });
    let out = Command::new(BIN)
        .arg(&config)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("error: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(lines[0].contains("address already in use"), "{stderr}");
    assert!(lines[0].contains("listen.address"), "{stderr}");
}

#[test]
fn once_prints_a_valid_exposition_without_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    // A port that is taken proves --once never binds.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = agent_config(dir.path(), |c| {
        c.set("listen.address", format!("127.0.0.1:{port}"))
    });
    let out = Command::new(BIN)
        .arg("--once")
        .arg(&config)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (ok, msg) = promtool_check(&text);
    assert!(ok, "{msg}");
    assert_eq!(
        sample(&text, "memory_total_bytes", &[]),
        Some(mem_total_bytes())
    );
    assert!(
        sample(&text, "filesystem_size_bytes", &["mountpoint=\"/\""]).unwrap_or(0.0) > 0.0,
        "root filesystem measured before printing"
    );

    // `sonde agent --once FILE` is the same.
    let out = Command::new(BIN)
        .args(["agent", "--once"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn help_and_version() {
    let o = sonde(&["--help"]);
    assert_eq!(o.code, Some(0));
    for word in ["--once", "check", "agent", "exporter", "/metrics"] {
        assert!(o.stdout.contains(word), "--help should mention {word}");
    }
    let o = sonde(&["--version"]);
    assert_eq!(
        o.stdout.trim(),
        format!("sonde {}", env!("CARGO_PKG_VERSION"))
    );
    let o = sonde(&[]);
    assert_eq!(o.code, Some(2));
}

#[test]
fn shipped_hindsight_config_is_valid_and_bad_keys_are_located() {
    let o = sonde(&[
        "check",
        repo().join("config/hindsight.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.contains("valid hindsight config"), "{}", o.stdout);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hindsight.toml");
    std::fs::write(
        &path,
        "[source]\ninterval = \"5s\"\n[buffer]\nduration = \"1s\"\nmax_bytes = \"10kB\"\n",
    )
    .unwrap();
    let o = sonde(&["check", path.to_str().unwrap()]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    for want in [
        ":4: key `buffer.duration`: must be at least one [source] interval",
        ":5: key `buffer.max_bytes`: must be at least 1MiB",
    ] {
        assert!(o.stderr.contains(want), "{want}: {}", o.stderr);
    }
    std::fs::write(&path, "[buffer]\nwindow = \"5m\"\n").unwrap();
    let o = sonde(&["hindsight", path.to_str().unwrap()]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr
            .contains(":2: key `buffer.window`: unknown field `window`"),
        "{}",
        o.stderr
    );
}
