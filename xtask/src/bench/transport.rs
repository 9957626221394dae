//! What securing the endpoint costs the agent: one agent configuration
//! served over plain http, https, https with basic auth (bcrypt, cost 10)
//! and https with a bearer token, scraped by curl like Prometheus does
//! (gzip), over one keep-alive connection and with a new connection (and
//! TLS handshake) per scrape. The TTL is an hour, so every scrape is served
//! from the cached body: the figures are the HTTP, TLS and auth cost alone.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::proc::Proc;
use super::sonde_bin;
use crate::root;

pub struct Row {
    pub name: &'static str,
    /// Agent CPU per scrape over one keep-alive connection.
    pub keepalive_cpu: Duration,
    /// Wall time per scrape over one keep-alive connection.
    pub keepalive_wall: Duration,
    /// Agent CPU per scrape, each on a new connection.
    pub new_conn_cpu: Duration,
}

const KEEPALIVE: usize = 400;
const NEW_CONNECTIONS: usize = 100;

pub fn measure(dir: &Path) -> Result<Vec<Row>> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki)?;
    let openssl = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&pki)
            .output()?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=bench CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ])?;
    std::fs::write(pki.join("ext"), "subjectAltName=IP:127.0.0.1\n")?;
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "ext",
    ])?;
    let hash = Command::new("htpasswd")
        .args(["-nbBC", "10", "bench", "pw"])
        .output()
        .context("htpasswd (apache2-utils)")?;
    let hash = String::from_utf8(hash.stdout)?
        .trim()
        .split_once(':')
        .map(|(_, h)| h.to_string())
        .context("htpasswd printed no hash")?;
    std::fs::write(pki.join("token"), "bench-token\n")?;
    let p = |f: &str| pki.join(f).display().to_string();
    let tls = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        p("server.pem"),
        p("server.key")
    );
    let ca = p("ca.pem");
    let variants: [(&'static str, String, Vec<String>); 4] = [
        ("http", String::new(), vec![]),
        ("https", tls.clone(), vec!["--cacert".into(), ca.clone()]),
        (
            "https + basic auth",
            format!("{tls}basic_auth_users = {{ bench = \"{hash}\" }}\n"),
            vec![
                "--cacert".into(),
                ca.clone(),
                "-u".into(),
                "bench:pw".into(),
            ],
        ),
        (
            "https + bearer token",
            format!("{tls}bearer_token_file = \"{}\"\n", p("token")),
            vec![
                "--cacert".into(),
                ca,
                "-H".into(),
                "Authorization: Bearer bench-token".into(),
            ],
        ),
    ];
    let template = std::fs::read_to_string(root().join("config/agent.toml"))?
        .replace("ttl = \"100ms\"", "ttl = \"1h\"");
    let mut rows = Vec::new();
    for (name, keys, args) in variants {
        let text = template.replace(
            "address = \"127.0.0.1:4251\"\n",
            &format!("address = \"127.0.0.1:0\"\n{keys}"),
        );
        let config = dir.join("transport.toml");
        std::fs::write(&config, text)?;
        let mut agent = Proc::spawn(&sonde_bin(), &[config.to_str().unwrap()])?;
        let port = agent.wait_port(Duration::from_secs(60))?;
        let scheme = if keys.contains("tls_cert_file") {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://127.0.0.1:{port}/metrics");
        curl(&args, &url, 1)?;
        let (cpu, start) = (agent.cpu(), Instant::now());
        curl(&args, &url, KEEPALIVE)?;
        let keepalive_wall = start.elapsed() / KEEPALIVE as u32;
        let keepalive_cpu = (agent.cpu() - cpu) / KEEPALIVE as u32;
        let cpu = agent.cpu();
        for _ in 0..NEW_CONNECTIONS {
            curl(&args, &url, 1)?;
        }
        let new_conn_cpu = (agent.cpu() - cpu) / NEW_CONNECTIONS as u32;
        rows.push(Row {
            name,
            keepalive_cpu,
            keepalive_wall,
            new_conn_cpu,
        });
    }
    Ok(rows)
}

/// `n` gzip'd GETs of `url` in one curl, which reuses its connection.
fn curl(args: &[String], url: &str, n: usize) -> Result<()> {
    let status = Command::new("curl")
        .args(["-sS", "--fail", "--compressed", "-o", "/dev/null"])
        .args(args)
        .args(std::iter::repeat_n(url, n))
        .stdout(Stdio::null())
        .status()
        .context("curl")?;
    if !status.success() {
        bail!("curl {url} failed ({status})");
    }
    Ok(())
}
