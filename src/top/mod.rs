//! `sonde top`: the running agent's `/top` table in a terminal, once or
//! refreshed every walk interval until Ctrl-C. A client of the agent's HTTP
//! endpoint only: the table is built by the agent's processes sampler.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

/// Which list to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sort {
    Cpu,
    Rss,
}

pub struct Options {
    /// The agent's `[listen] address`.
    pub listen: SocketAddr,
    pub once: bool,
    pub rows: usize,
    pub sort: Sort,
}

#[derive(Deserialize)]
struct Table {
    interval_seconds: f64,
    processes: usize,
    by_cpu: Vec<Row>,
    by_rss: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    pid: u32,
    comm: String,
    user: String,
    cgroup: String,
    #[serde(default)]
    container: String,
    cpu_percent: f64,
    rss_bytes: u64,
    read_bytes_per_second: f64,
    write_bytes_per_second: f64,
    threads: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Where to reach an agent listening on `listen`: a wildcard address is
/// reached on loopback.
pub fn url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/top", SocketAddr::new(ip, listen.port()))
}

pub fn run(o: Options) -> anyhow::Result<()> {
    let url = url(o.listen);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("sonde/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(5))
        .build()
        .context("cannot build the HTTP client")?;
    let tty = std::io::stdout().is_terminal();
    loop {
        let table = rt.block_on(fetch(&client, &url))?;
        let text = render(&table, &o, &url);
        let mut out = std::io::stdout().lock();
        if !o.once && tty {
            // Home and clear: the table redraws in place.
            out.write_all(b"\x1b[H\x1b[2J")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        if o.once {
            return Ok(());
        }
        let wait = Duration::from_secs_f64(table.interval_seconds.clamp(0.5, 3600.0));
        std::thread::sleep(wait);
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<Table> {
    let resp = client.get(url).send().await.map_err(|e| {
        let why = if e.is_connect() {
            "connection refused: is the agent running (`sudo sonde CONFIG`)?".to_string()
        } else if e.is_timeout() {
            "no answer within 5s".to_string()
        } else {
            e.to_string()
        };
        anyhow::anyhow!("cannot reach the agent at {url}: {why}")
    })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        let why = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
        anyhow::bail!("{url} answered {status}: {why}");
    }
    serde_json::from_slice(&body).with_context(|| format!("{url} did not answer a /top table"))
}

/// `12.3M`-style sizes, as top prints them.
fn human(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}", UNITS[u])
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

fn render(t: &Table, o: &Options, url: &str) -> String {
    let rows = match o.sort {
        Sort::Cpu => &t.by_cpu,
        Sort::Rss => &t.by_rss,
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{url}: {} processes, by {} over the last {}s",
        t.processes,
        match o.sort {
            Sort::Cpu => "CPU",
            Sort::Rss => "resident memory",
        },
        t.interval_seconds
    );
    let _ = writeln!(
        s,
        "{:>8} {:<10} {:>6} {:>7} {:>7} {:>7} {:>4} {:<16} {:<20} CGROUP",
        "PID", "USER", "CPU%", "RSS", "READ/s", "WRITE/s", "THR", "COMM", "CONTAINER"
    );
    for r in rows.iter().take(o.rows) {
        let user: String = r.user.chars().take(10).collect();
        let _ = writeln!(
            s,
            "{:>8} {:<10} {:>6.1} {:>7} {:>7} {:>7} {:>4} {:<16} {:<20} {}",
            r.pid,
            user,
            r.cpu_percent,
            human(r.rss_bytes as f64),
            human(r.read_bytes_per_second),
            human(r.write_bytes_per_second),
            r.threads,
            r.comm,
            r.container,
            r.cgroup
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_urls() {
        assert_eq!(human(0.0), "0B");
        assert_eq!(human(1536.0), "1.5K");
        assert_eq!(human(300.0 * 1024.0 * 1024.0), "300M");
        assert_eq!(
            url("0.0.0.0:4251".parse().unwrap()),
            "http://127.0.0.1:4251/top"
        );
        assert_eq!(url("[::]:4251".parse().unwrap()), "http://[::1]:4251/top");
        assert_eq!(url("10.0.0.5:9".parse().unwrap()), "http://10.0.0.5:9/top");
    }
}
