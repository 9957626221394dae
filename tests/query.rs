//! `sonde query` and `sonde dump` against the real thing: a recording of
//! a real agent under load is dumped as OpenMetrics, backfilled into
//! Debian's Prometheus with promtool, and every case of the table is
//! asked of both — the same series, the same steps, the same values
//! (within float rounding). Constructs the engine refuses are refused with
//! an error that names them; bad input fails with a clear error.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Queries Prometheus and Sonde must answer alike, over Prometheus names.
const CASES: &[&str] = &[
    // Selectors and matchers.
    "syscalls_total",
    "syscalls_total{op=\"read\"}",
    "syscalls_total{op!=\"read\"}",
    "syscalls_total{op=~\"re.*|write\"}",
    "syscalls_total{op!~\"re.*\"}",
    "memory_available_bytes",
    "load_average",
    // Range functions, their windows and extrapolation.
    "rate(syscalls_total[10s])",
    "rate(syscalls_total[3s])",
    "irate(syscalls_total[10s])",
    "increase(cpu_usage_seconds_total[15s])",
    "delta(memory_available_bytes[10s])",
    "idelta(memory_available_bytes[10s])",
    "rate(syscalls_total[10s] offset 5s)",
    "deriv(memory_available_bytes[20s])",
    "changes(memory_available_bytes[20s])",
    "resets(syscalls_total[20s])",
    "avg_over_time(memory_available_bytes[10s])",
    "max_over_time(load_average[10s])",
    "min_over_time(memory_available_bytes[10s])",
    "count_over_time(memory_available_bytes[10s])",
    "sum_over_time(scheduler_context_switches_total[5s])",
    "last_over_time(memory_available_bytes[10s])",
    "stddev_over_time(memory_available_bytes[20s])",
    "quantile_over_time(0.9, memory_available_bytes[20s])",
    // Aggregations.
    "sum by (op) (rate(syscalls_total[10s]))",
    "sum without (state) (rate(cpu_usage_seconds_total[10s]))",
    "avg(rate(cpu_usage_seconds_total[10s]))",
    "max by (state) (rate(cpu_usage_seconds_total[10s]))",
    "min by (cpu) (rate(cpu_usage_seconds_total[10s]))",
    "count(syscalls_total)",
    "count by (kind) (scheduler_context_switches_total)",
    "group by (op) (syscalls_total)",
    "stddev(rate(syscalls_total[10s]))",
    "quantile(0.5, rate(syscalls_total[10s]))",
    "topk(1, sum by (op) (rate(syscalls_total[10s])))",
    // Without ties: the order of equal samples is unspecified.
    "bottomk(1, sum by (state) (rate(cpu_usage_seconds_total{state=~\"user|system|idle\"}[10s])))",
    // Arithmetic, comparisons, matching.
    "-rate(syscalls_total{op=\"read\"}[10s]) * 2 + 1",
    "rate(syscalls_total[10s]) / 1000",
    "2 ^ 3 - 4 % 3",
    "sum by (state) (rate(cpu_usage_seconds_total[10s])) / ignoring (state) group_left sum(rate(cpu_usage_seconds_total[10s]))",
    "rate(cpu_usage_seconds_total{state=\"user\"}[10s]) + on (cpu) rate(cpu_usage_seconds_total{state=\"system\"}[10s])",
    "rate(cpu_usage_seconds_total{state=\"user\"}[10s]) / ignoring (state) rate(cpu_usage_seconds_total{state=\"idle\"}[10s])",
    "rate(syscalls_total[10s]) > 1",
    "rate(syscalls_total[10s]) > bool 1",
    "1 < bool 2",
    "scheduler_context_switches_total and on (kind) scheduler_context_switches_total{kind=\"voluntary\"}",
    "syscalls_total{op=\"read\"} or syscalls_total{op=\"write\"}",
    "syscalls_total unless syscalls_total{op=\"read\"}",
    // Functions of instant vectors.
    "abs(-rate(syscalls_total[10s]))",
    "clamp_max(rate(syscalls_total[10s]), 10)",
    "clamp_min(rate(syscalls_total[10s]), 10)",
    "round(rate(syscalls_total[10s]))",
    "round(rate(syscalls_total[10s]), 0.1)",
    "ceil(rate(syscalls_total[10s]))",
    "floor(rate(syscalls_total[10s]))",
    "sqrt(rate(syscalls_total[10s]))",
    "ln(memory_available_bytes)",
    "scalar(sum(rate(syscalls_total[10s])))",
    "vector(1)",
    "time()",
    // Histograms, as classic buckets.
    "histogram_quantile(0.99, sum by (le) (rate(scheduler_runqueue_latency_seconds_bucket[10s])))",
    "histogram_quantile(0.5, rate(scheduler_runqueue_latency_seconds_bucket[10s]))",
    "histogram_quantile(0.9, sum by (le) (rate(scheduler_running_seconds_bucket[20s])))",
    "rate(scheduler_runqueue_latency_seconds_count[10s])",
];

/// Valid PromQL the engine refuses, and what its error must name.
const REFUSED: &[(&str, &str)] = &[
    ("rate(syscalls_total[1m:10s])", "subqueries"),
    (
        "label_replace(syscalls_total, \"a\", \"$1\", \"op\", \"(.*)\")",
        "label_replace",
    ),
    ("syscalls_total @ 1700000000", "@ modifier"),
    ("count_values(\"v\", syscalls_total)", "count_values"),
    (
        "holt_winters(memory_available_bytes[1m], 0.5, 0.5)",
        "holt_winters",
    ),
];

fn sonde(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run sonde")
}

/// `[(labels, [(t, v)])]` of a Prometheus matrix, sorted.
fn matrix(data: &serde_json::Value) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = data["result"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let v = p[1].as_str().unwrap();
                    let v = match v {
                        "+Inf" => f64::INFINITY,
                        "-Inf" => f64::NEG_INFINITY,
                        v => v.parse().unwrap(),
                    };
                    (p[0].as_f64().unwrap(), v)
                })
                .collect();
            (format!("{labels:?}"), points)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan())
        || a == b
        || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
        || (a - b).abs() < 1e-12
}

/// Records a real agent under load for `secs`.
fn recording(dir: &Path, secs: u64) -> std::path::PathBuf {
    let agent = Agent::start();
    let out = dir.join("rec.parquet");
    let load = std::thread::spawn(move || {
        for _ in 0..secs * 2 {
            getppid_calls(50_000);
            std::thread::sleep(Duration::from_millis(400));
        }
    });
    let r = sonde(&[
        "record",
        &agent.url(""),
        "-o",
        out.to_str().unwrap(),
        "--duration",
        &format!("{secs}s"),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    load.join().unwrap();
    out
}

#[test]
fn queries_answer_as_prometheus_does() {
    if !bpf_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 40);
    // The recording as OpenMetrics, backfilled into Prometheus.
    let om = dir.path().join("rec.om");
    let f = std::fs::File::create(&om).unwrap();
    let d = Command::new(BIN)
        .args(["dump", rec.to_str().unwrap(), "--format", "openmetrics"])
        .stdout(Stdio::from(f))
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let data = dir.path().join("data");
    let b = Command::new(tool("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        b.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&b.stdout),
        String::from_utf8_lossy(&b.stderr)
    );
    let prom = common::prometheus::Prometheus::on_data(&data);
    // The steps: whole seconds inside the recording, every 3 s.
    let times = sonde(&[
        "dump",
        rec.to_str().unwrap(),
        "sonde_build_info",
        "--format",
        "json",
    ]);
    let times: serde_json::Value = serde_json::from_slice(&times.stdout).unwrap();
    let ts = times["series"][0]["timestamps"].as_array().unwrap();
    let first = ts.first().unwrap().as_f64().unwrap().ceil();
    let last = ts.last().unwrap().as_f64().unwrap().floor();
    let (start, end, step) = (first + 20.0, last, 3.0);
    let mut compared = 0;
    for q in CASES {
        let want = prom
            .query_range(q, start, end, step)
            .unwrap_or_else(|e| panic!("Prometheus refused {q}: {e}"));
        let out = sonde(&[
            "query",
            rec.to_str().unwrap(),
            q,
            "-b",
            &start.to_string(),
            "-e",
            &end.to_string(),
            "--step",
            "3s",
            "--format",
            "json",
        ]);
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Scalars are a matrix of one unlabelled series in a range query.
        let want = if want["resultType"] == "scalar" {
            serde_json::json!({"result": [{"metric": {}, "values": [want["result"]]}]})
        } else {
            want
        };
        let (w, g) = (matrix(&want), matrix(&got["data"]));
        assert!(
            !w.is_empty(),
            "{q}: Prometheus has no series (a case that proves nothing)"
        );
        let wl: Vec<&String> = w.iter().map(|s| &s.0).collect();
        let gl: Vec<&String> = g.iter().map(|s| &s.0).collect();
        assert_eq!(wl, gl, "{q}: different series");
        for ((name, wp), (_, gp)) in w.iter().zip(&g) {
            assert_eq!(
                wp.iter().map(|p| p.0).collect::<Vec<_>>(),
                gp.iter().map(|p| p.0).collect::<Vec<_>>(),
                "{q} {name}: different steps"
            );
            for (a, b) in wp.iter().zip(gp) {
                assert!(
                    same(a.1, b.1),
                    "{q} {name} at {}: Prometheus {} vs Sonde {}",
                    a.0,
                    a.1,
                    b.1
                );
                compared += 1;
            }
        }
    }
    eprintln!(
        "{} cases, {compared} samples equal to Prometheus's",
        CASES.len()
    );
    for (q, named) in REFUSED {
        let out = sonde(&["query", rec.to_str().unwrap(), q]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{q}: {err}");
        assert!(err.contains(named), "{q}: {err}");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = {
        let missing = dir.path().join("missing.parquet");
        let text = dir.path().join("text.parquet");
        std::fs::write(&text, "not parquet at all\n".repeat(100)).unwrap();
        let empty = dir.path().join("empty.parquet");
        std::fs::write(&empty, "").unwrap();
        let s = |p: &Path| p.to_str().unwrap().to_string();
        vec![
            (vec![s(&missing), "x".into()], 1, "no such file"),
            (vec![s(&text), "x".into()], 1, "not a readable parquet file"),
            (
                vec![s(&empty), "x".into()],
                1,
                "not a readable parquet file",
            ),
        ]
    };
    for (args, code, says) in cases {
        let mut a = vec!["query".to_string()];
        a.extend(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = sonde(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{a:?}: {err}");
        assert!(err.contains(says), "{a:?}: {err}");
        assert!(!err.contains("panicked"), "{a:?}: {err}");
    }
    let out = sonde(&["query", "x.parquet", "rate(", "-b", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad time `soon`"));
}

/// A recording in Rezolus's own layout (tests/common/rezolus.rs): it
/// opens, its sidecars and states are left out, and queries read the
/// values written.
#[test]
fn a_rezolus_recording_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rezolus.parquet");
    common::rezolus::write(&path);

    let p = path.to_str().unwrap();
    let value = |expr: &str| -> Vec<(String, f64)> {
        let out = sonde(&["query", p, expr, "--format", "json"]);
        assert!(
            out.status.success(),
            "{expr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                // The last step: the rate over the last 5 s.
                let x = &s["values"].as_array().unwrap().last().unwrap()[1];
                let x = x.as_f64().or_else(|| x.as_str()?.parse().ok()).unwrap();
                (s["metric"].to_string(), x)
            })
            .collect()
    };
    let busy = value("rate(cpu_usage[5s])");
    assert_eq!(busy.len(), 2, "{busy:?}");
    assert!(
        busy.iter()
            .all(|(l, _)| l.contains("\"source\":\"rezolus\"") && l.contains("\"state\":\"user\"")),
        "{busy:?}"
    );
    assert_eq!(value("sum(rate(cpu_usage[5s]))")[0].1, 750_000_000.0);
    assert_eq!(value("memory_available")[0].1, (8u64 << 30) as f64);
    let p50 = value("histogram_quantile(0.5, rate(scheduler_runqueue_latency[5s]))");
    assert_eq!(
        p50.len(),
        1,
        "the gauge histogram is not a second series: {p50:?}"
    );
    // H2 with grouping power 3: within 12.5 % of the value.
    assert!((p50[0].1 - 1000.0).abs() <= 125.0, "{p50:?}");
    // Sidecars are not series.
    let all = sonde(&["dump", p, "--format", "json"]);
    let text = String::from_utf8_lossy(&all.stdout);
    assert!(all.status.success());
    assert!(!text.contains("window_begin") && !text.contains("wall_offset"));
    let hist_count = value("histogram_count(rate(scheduler_runqueue_latency[5s]))");
    assert_eq!(hist_count, vec![("{}".to_string(), 100.0)]);
    // A huge range is clipped to the data; a huge number of steps refused.
    let all = sonde(&[
        "query",
        p,
        "sum(rate(cpu_usage[5s]))",
        "-b",
        "0",
        "-e",
        "now",
        "--format",
        "json",
    ]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert!(String::from_utf8_lossy(&all.stdout).contains("750000000"));
    let many = sonde(&[
        "query",
        p,
        "cpu_usage",
        "-b",
        "0",
        "-e",
        "now",
        "--step",
        "1ns",
    ]);
    let err = String::from_utf8_lossy(&many.stderr);
    assert_eq!(many.status.code(), Some(1), "{err}");
    assert!(err.contains("raise --step"), "{err}");
    // The same file cut short.
    let bytes = std::fs::read(&path).unwrap();
    let torn = dir.path().join("torn.parquet");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    let out = sonde(&["query", torn.to_str().unwrap(), "cpu_usage"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("truncated or not parquet"), "{err}");
}
