//! The exporter relaying 100 sources: stand-in agents on loopback, each a
//! small HTTP server forwarding the bench agent's current
//! `/metrics/binary`, of which 3 answer only after 3 s and 2 are dead.
//! Measured: the exporter's scrape time (median and worst of 20), its CPU
//! per second and RSS, the series it serves, and that every healthy source
//! is up (the slow and dead ones delay no one); then the same while a
//! scraper asks for protobuf (native histograms), which the exporter then
//! builds as well.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::proc::{free_port, get_accepting, get_once, wait_http, Proc};
use super::scrape::{protobuf_series, PROTOBUF};
use super::sonde_bin;

pub const SOURCES: usize = 100;
const SLOW: usize = 3;
const DEAD: usize = 2;

pub struct Fleet {
    pub series: usize,
    pub up: usize,
    pub scrape_median: Duration,
    pub scrape_max: Duration,
    pub cpu_per_sec: Duration,
    pub rss: u64,
    /// The same while protobuf is asked for.
    pub protobuf: Protobuf,
}

pub struct Protobuf {
    pub series: usize,
    pub bytes: usize,
    pub text_bytes: usize,
    pub scrape_median: Duration,
    pub cpu_per_sec: Duration,
    pub rss: u64,
}

/// A stand-in agent: answers every request with the agent's snapshot,
/// after `delay`; 503 once `on` is false.
pub fn stand_in(agent_port: u16, delay: Duration, on: Arc<AtomicBool>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let on = Arc::clone(&on);
            std::thread::spawn(move || -> Result<()> {
                let mut r = BufReader::new(conn.try_clone()?);
                let mut line = String::new();
                while r.read_line(&mut line)? > 2 {
                    line.clear();
                }
                std::thread::sleep(delay);
                let mut w = conn;
                if !on.load(Ordering::Relaxed) {
                    w.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
                    return Ok(());
                }
                let body = get_once(agent_port, "/metrics/binary", false)?.body;
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )?;
                w.write_all(&body)?;
                Ok(())
            });
        }
    });
    Ok(port)
}

pub fn measure(agent_port: u16, dir: &Path) -> Result<Fleet> {
    let mut urls = Vec::new();
    for i in 0..SOURCES - DEAD {
        let delay = if i < SOURCES - DEAD - SLOW {
            Duration::ZERO
        } else {
            Duration::from_secs(3)
        };
        let on = Arc::new(AtomicBool::new(true));
        urls.push(format!(
            "http://127.0.0.1:{}",
            stand_in(agent_port, delay, on)?
        ));
    }
    for _ in 0..DEAD {
        urls.push(format!("http://127.0.0.1:{}", free_port()?));
    }
    let port = free_port()?;
    let mut config = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\n[general]\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
    );
    for u in &urls {
        config += &format!("[[sources]]\nurl = \"{u}\"\n");
    }
    let path = dir.join("fleet-exporter.toml");
    std::fs::write(&path, config)?;
    let exporter = Proc::spawn(&sonde_bin(), &["exporter", path.to_str().unwrap()])?;
    wait_http(port, Duration::from_secs(20))?;
    let healthy = SOURCES - SLOW - DEAD;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = String::from_utf8_lossy(&get_once(port, "/metrics", false)?.body).into_owned();
        let up = text
            .lines()
            .filter(|l| l.starts_with("sonde_exporter_source_up{") && l.ends_with(" 1"))
            .count();
        if up >= healthy {
            break;
        }
        if Instant::now() > deadline {
            bail!("{up} of {healthy} healthy sources up after 30 s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (c0, t0) = (exporter.cpu(), Instant::now());
    let mut times = Vec::new();
    for tick in 0..20u32 {
        let t = Instant::now();
        get_once(port, "/metrics", true)?;
        times.push(t.elapsed());
        let next = t0 + Duration::from_secs(u64::from(tick) + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let cpu_per_sec = (exporter.cpu() - c0).div_f64(t0.elapsed().as_secs_f64());
    times.sort();
    let rss = exporter.rss().1;
    let text = String::from_utf8_lossy(&get_once(port, "/metrics", false)?.body).into_owned();
    let protobuf = protobuf(port, &exporter)?;
    Ok(Fleet {
        series: text.lines().filter(|l| !l.starts_with('#')).count(),
        up: text
            .lines()
            .filter(|l| l.starts_with("sonde_exporter_source_up{") && l.ends_with(" 1"))
            .count(),
        scrape_median: times[times.len() / 2],
        scrape_max: times[times.len() - 1],
        cpu_per_sec,
        rss,
        protobuf: Protobuf {
            text_bytes: text.len(),
            ..protobuf
        },
    })
}

/// 20 scrapes a second apart asking for protobuf, as Prometheus with
/// native histograms does (gzip'd), once the exporter builds it.
fn protobuf(port: u16, exporter: &Proc) -> Result<Protobuf> {
    get_accepting(port, "/metrics", PROTOBUF, false)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let r = get_accepting(port, "/metrics", PROTOBUF, false)?;
        if r.content_type
            .starts_with("application/vnd.google.protobuf")
        {
            break r.body;
        }
        if Instant::now() > deadline {
            bail!("the exporter still answers {:?} after 10 s", r.content_type);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (c0, t0) = (exporter.cpu(), Instant::now());
    let mut times = Vec::new();
    for tick in 0..20u32 {
        let t = Instant::now();
        get_accepting(port, "/metrics", PROTOBUF, true)?;
        times.push(t.elapsed());
        let next = t0 + Duration::from_secs(u64::from(tick) + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    times.sort();
    Ok(Protobuf {
        series: protobuf_series(&body)?,
        bytes: body.len(),
        text_bytes: 0,
        scrape_median: times[times.len() / 2],
        cpu_per_sec: (exporter.cpu() - c0).div_f64(t0.elapsed().as_secs_f64()),
        rss: exporter.rss().1,
    })
}
