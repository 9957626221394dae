//! Not a test: `cargo xtask bench` runs this (ignored) to write the day
//! its engine timings are taken on — 24 h at 1 s of a full agent, every
//! series a real agent has (two snapshots pulled from
//! `SONDE_BENCH_URL`), each advancing at the rate it had between them
//! with noise, through the recorder's own parquet writer. One injected
//! hour at 3× the syscall rate gives the analyses something to find.

mod common;

use std::time::{Duration, SystemTime};

use sonde::snapshot::{Metric, Snapshot, Stamp, Value};

const ROWS: u64 = 86_400;

fn pull(url: &str) -> Snapshot {
    let r = common::http(url, &[]);
    assert_eq!(r.status, 200, "{url}");
    sonde::snapshot::decode(&r.body).expect("decode /metrics/binary")
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
