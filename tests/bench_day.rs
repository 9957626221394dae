//! Not a test: `cargo xtask bench` runs this (ignored) to write the day
//! its engine timings are taken on — 24 h at 1 s of a full agent, every
//! series a real agent has (two snapshots pulled from
//! `SONDE_BENCH_URL`), each advancing at the rate it had between them
//! with noise, through the recorder's own parquet writer. One injected
//! hour at 3× the syscall rate gives the analyses something to find.

use std::time::{Duration, SystemTime};

use sonde::snapshot::{Metric, Snapshot, Stamp, Value};

const ROWS: u64 = 86_400;

fn pull(url: &str) -> Snapshot {
    let body = http::get(url);
    sonde::snapshot::decode(&body).expect("decode /metrics/binary")
}

mod http {
    /// A GET over a plain TCP socket: the test needs no HTTP client.
    pub fn get(url: &str) -> Vec<u8> {
        use std::io::{Read as _, Write as _};
        let rest = url.strip_prefix("http://").expect("an http:// URL");
        let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
        let mut s = std::net::TcpStream::connect(host).expect("connect to the agent");
        write!(
            s,
            "GET /{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
            path.trim_start_matches('/')
        )
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let at = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer")
            + 4;
        let head = String::from_utf8_lossy(&buf[..at]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let body = buf.split_off(at);
        if head.contains("transfer-encoding: chunked") {
            dechunk(&body)
        } else {
            body
        }
    }

    /// The body of a chunked answer: hex size, CRLF, bytes, CRLF, … 0.
    fn dechunk(mut b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let eol = b
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a chunk size");
            let size = std::str::from_utf8(&b[..eol]).unwrap();
            let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
            b = &b[eol + 4 + size..];
        }
    }
}

/// A small deterministic noise source (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Day {
    first: Snapshot,
    /// Per metric: what it gains per second.
    rates: Vec<Rate>,
    start: SystemTime,
}

enum Rate {
    Counter(u64),
    Gauge,
    Histogram(Vec<u64>),
}

impl sonde::parquet::Snapshots for Day {
    fn each(&mut self, f: &mut dyn FnMut(Snapshot)) -> anyhow::Result<()> {
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        let mut state: Vec<Value> = self.first.metrics.iter().map(|m| clone(&m.value)).collect();
        for row in 0..ROWS {
            // 12:00 to 13:00: the syscall storm.
            let storm = (43_200..46_800).contains(&row);
            let metrics = self
                .first
                .metrics
                .iter()
                .zip(&self.rates)
                .zip(state.iter_mut())
                .map(|((m, rate), v)| {
                    let k = 0.8 + 0.4 * noise.next();
                    let k = if storm && m.name == "syscalls" {
                        3.0 * k
                    } else {
                        k
                    };
                    match (rate, &mut *v) {
                        (Rate::Counter(r), Value::Counter(c)) => *c += (*r as f64 * k) as u64,
                        (Rate::Gauge, Value::Gauge(g)) => {
                            *g = (*g as f64 * (0.99 + 0.02 * noise.next())) as i64
                        }
                        (Rate::Histogram(d), Value::Histogram { buckets, .. }) => {
                            for (b, d) in buckets.iter_mut().zip(d) {
                                *b += (*d as f64 * k) as u64;
                            }
                        }
                        _ => {}
                    }
                    Metric {
                        id: m.id.clone(),
                        name: m.name.clone(),
                        labels: m.labels.clone(),
                        unit: m.unit.clone(),
                        value: clone(v),
                    }
                })
                .collect();
            f(Snapshot {
                stamp: Stamp {
                    systemtime: self.start + Duration::from_secs(row),
                    duration: Duration::from_millis(1),
                },
                metadata: self.first.metadata.clone(),
                metrics,
            });
        }
        Ok(())
    }
}

fn clone(v: &Value) -> Value {
    match v {
        Value::Counter(c) => Value::Counter(*c),
        Value::Gauge(g) => Value::Gauge(*g),
        Value::Histogram { layout, buckets } => Value::Histogram {
            layout: *layout,
            buckets: buckets.clone(),
        },
    }
}

#[test]
#[ignore = "not a test: cargo xtask bench writes its 24 h recording with it"]
fn synthesize_a_day() {
    let url = std::env::var("SONDE_BENCH_URL").expect("SONDE_BENCH_URL");
    let out = std::env::var("SONDE_BENCH_DAY").expect("SONDE_BENCH_DAY");
    let url = format!("{}/metrics/binary", url.trim_end_matches('/'));
    let a = pull(&url);
    std::thread::sleep(Duration::from_secs(2));
    let b = pull(&url);
    let secs = 2.0;
    let rates = a
        .metrics
        .iter()
        .map(|m| {
            let later = b.metrics.iter().find(|x| x.id == m.id).map(|x| &x.value);
            match (&m.value, later) {
                (Value::Counter(x), Some(Value::Counter(y))) => {
                    Rate::Counter((y.saturating_sub(*x) as f64 / secs) as u64)
                }
                (
                    Value::Histogram { buckets: x, .. },
                    Some(Value::Histogram { buckets: y, .. }),
                ) => Rate::Histogram(
                    x.iter()
                        .zip(y)
                        .map(|(x, y)| (y.saturating_sub(*x) as f64 / secs).ceil() as u64)
                        .collect(),
                ),
                (Value::Counter(_), _) => Rate::Counter(0),
                (Value::Histogram { buckets, .. }, _) => Rate::Histogram(vec![0; buckets.len()]),
                (Value::Gauge(_), _) => Rate::Gauge,
            }
        })
        .collect();
    let start = SystemTime::now() - Duration::from_secs(ROWS + 3600);
    let mut day = Day {
        first: a,
        rates,
        start,
    };
    let tmp = format!("{out}.partial");
    let meta = sonde::parquet::file_metadata(Duration::from_secs(1), None, None);
    let s = sonde::parquet::write(std::path::Path::new(&tmp), &meta, &mut day).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    eprintln!(
        "wrote {out}: {} rows, {} columns, {} MB",
        s.rows,
        s.columns,
        s.bytes >> 20
    );
}
