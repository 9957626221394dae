//! Scrape cost: Sonde and node_exporter pulled side by side at 1 Hz.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::proc::{get_once, Conn, Proc};
use super::Plan;

pub fn map_bytes(port: u16) -> Result<u64> {
    let text = String::from_utf8(get_once(port, "/samplers", false)?.body)?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"map_bytes\":"))
        .filter_map(|v| v.trim().trim_end_matches(',').parse::<u64>().ok())
        .sum())
}

/// Latencies of one endpoint over one keep-alive connection, and its
/// body sizes.
pub struct Endpoint {
    pub conn: Conn,
    pub path: &'static str,
    pub latencies: Vec<Duration>,
    pub plain: usize,
    pub gzip: usize,
    pub gzipped: bool,
}

impl Endpoint {
    fn new(port: u16, path: &'static str) -> Endpoint {
        Endpoint {
            conn: Conn::new(port),
            path,
            latencies: Vec::new(),
            plain: 0,
            gzip: 0,
            gzipped: false,
        }
    }

    fn pull(&mut self) -> Result<()> {
        let path = self.path;
        let t = Instant::now();
        let r = self.conn.get(path, true)?;
        self.latencies.push(t.elapsed());
        if r.status != 200 {
            bail!("{path} answered {}", r.status);
        }
        self.gzip = r.body.len();
        self.gzipped = r.gzipped;
        Ok(())
    }

    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

pub struct Side {
    pub cpu: Duration,
    pub scrapes: usize,
    pub secs: f64,
    pub rss: u64,
    pub hwm: u64,
}

pub struct Scrape {
    pub sonde: Side,
    pub node: Side,
    pub sonde_metrics: Endpoint,
    pub sonde_binary: Endpoint,
    pub node_metrics: Endpoint,
}

/// Each second, over keep-alive connections asking for gzip (as Prometheus
/// does): Sonde's /metrics, node_exporter's /metrics, and, after the
/// snapshot's TTL, Sonde's /metrics/binary (its own refresh).
pub fn scrape_phase(
    plan: &Plan,
    port: u16,
    ne_port: u16,
    agent: &Proc,
    ne: &Proc,
) -> Result<Scrape> {
    let mut sm = Endpoint::new(port, "/metrics");
    let mut sb = Endpoint::new(port, "/metrics/binary");
    let mut nm = Endpoint::new(ne_port, "/metrics");
    let (a0, n0, t0) = (agent.cpu(), ne.cpu(), Instant::now());
    for tick in 0..plan.scrape_secs {
        let next = t0 + Duration::from_secs(tick + 1);
        sm.pull()?;
        nm.pull()?;
        std::thread::sleep(Duration::from_millis(300));
        sb.pull()?;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let secs = t0.elapsed().as_secs_f64();
    let (a1, n1) = (agent.cpu(), ne.cpu());
    sm.plain = get_once(port, "/metrics", false)?.body.len();
    sb.plain = get_once(port, "/metrics/binary", false)?.body.len();
    nm.plain = get_once(ne_port, "/metrics", false)?.body.len();
    let (rss, hwm) = agent.rss();
    let (nrss, nhwm) = ne.rss();
    let n = plan.scrape_secs as usize;
    Ok(Scrape {
        sonde: Side {
            cpu: a1 - a0,
            scrapes: 2 * n,
            secs,
            rss,
            hwm,
        },
        node: Side {
            cpu: n1 - n0,
            scrapes: n,
            secs,
            rss: nrss,
            hwm: nhwm,
        },
        sonde_metrics: sm,
        sonde_binary: sb,
        node_metrics: nm,
    })
}

/// What Prometheus asks for with its native histograms on.
pub const PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8,text/plain;version=0.0.4;q=0.5";

/// One exposition of the agent's `/metrics`: series a scrape stores, body
/// size, and the agent's CPU per refreshing scrape.
pub struct Exposition {
    pub series: usize,
    pub bytes: usize,
    pub cpu: Duration,
}

fn varint(b: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first().context("truncated varint")?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    anyhow::bail!("varint too long")
}

/// Calls `f(field, varint value, bytes)` for each field of a message.
fn fields<'a>(mut m: &'a [u8], mut f: impl FnMut(u64, u64, &'a [u8])) -> Result<()> {
    while !m.is_empty() {
        let key = varint(&mut m)?;
        match key & 7 {
            0 => {
                let v = varint(&mut m)?;
                f(key >> 3, v, &[]);
            }
            1 => m = m.get(8..).context("truncated field")?,
            5 => m = m.get(4..).context("truncated field")?,
            2 => {
                let l = varint(&mut m)? as usize;
                anyhow::ensure!(l <= m.len(), "truncated field");
                let (b, rest) = m.split_at(l);
                f(key >> 3, 0, b);
                m = rest;
            }
            t => anyhow::bail!("wire type {t}"),
        }
    }
    Ok(())
}

/// Series Prometheus stores from a delimited protobuf exposition: one per
/// counter, gauge or native histogram `Metric`, and per summary its
/// quantiles plus `_sum` and `_count`; read with a minimal walker.
pub fn protobuf_series(mut body: &[u8]) -> Result<usize> {
    let mut n = 0;
    while !body.is_empty() {
        let len = varint(&mut body)? as usize;
        anyhow::ensure!(len <= body.len(), "truncated family");
        let (family, rest) = body.split_at(len);
        body = rest;
        let (mut summary, mut metrics) = (false, Vec::new());
        fields(family, |field, v, b| match field {
            3 => summary = v == 2,
            4 => metrics.push(b),
            _ => {}
        })?;
        for m in metrics {
            if !summary {
                n += 1;
                continue;
            }
            n += 2;
            let mut quantiles = Vec::new();
            fields(m, |field, _, b| {
                if field == 4 {
                    quantiles.push(b)
                }
            })?;
            for s in quantiles {
                fields(s, |field, _, _| n += usize::from(field == 3))?;
            }
        }
    }
    Ok(n)
}

/// The agent's `/metrics` as text (every classic `le` bucket a series) and
/// as protobuf with native histograms: 20 refreshing scrapes of each.
pub fn expositions(port: u16, agent: &Proc) -> Result<(Exposition, Exposition)> {
    let one = |accept: Option<&str>| -> Result<Exposition> {
        let c0 = agent.cpu();
        let mut last = None;
        for _ in 0..20 {
            // Past the TTL: each scrape refreshes.
            std::thread::sleep(Duration::from_millis(150));
            last = Some(match accept {
                Some(a) => super::proc::get_accepting(port, "/metrics", a, false)?,
                None => get_once(port, "/metrics", false)?,
            });
        }
        let cpu = (agent.cpu() - c0) / 20;
        let last_type = last.as_ref().map(|r| r.content_type.clone());
        let body = last.map(|r| r.body).unwrap_or_default();
        let series = match accept {
            Some(_) => {
                let ct = last_type.unwrap_or_default();
                anyhow::ensure!(
                    ct.starts_with("application/vnd.google.protobuf"),
                    "the agent answered {ct:?}, not protobuf"
                );
                protobuf_series(&body)?
            }
            None => String::from_utf8_lossy(&body)
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count(),
        };
        Ok(Exposition {
            series,
            bytes: body.len(),
            cpu,
        })
    };
    Ok((one(None)?, one(Some(PROTOBUF))?))
}
