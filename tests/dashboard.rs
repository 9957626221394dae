//! The Grafana dashboard (packaging/grafana/sonde.json): its shape, checked
//! statically, and every panel query, evaluated by a real Prometheus that
//! scrapes a running agent while a real workload runs (syscalls, direct
//! block writes, loopback TCP connects, a CPU-quota-limited process in a
//! cgroup of its own). A query that returns nothing is a panel that would
//! show "No data", so every one must return a value that is not NaN.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cgroup::TestCgroup;
use common::prometheus::Prometheus;
use common::{repo, wait_for, Agent};
use serde_json::Value;

const DS: &str = "${DS_PROMETHEUS}";

/// What Grafana's own variables become in the test: `$__rate_interval`
/// covers 15 scrapes at Prometheus's 1 s interval, enough for rate().
const BUILTINS: [(&str, &str); 4] = [
    ("__rate_interval", "15s"),
    ("__interval", "1s"),
    ("__range", "30s"),
    ("__interval_ms", "1000"),
];

fn dashboard() -> Value {
    let path = repo().join("packaging/grafana/sonde.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows and the panels nested in (collapsed) rows included.
fn all_panels(dash: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

/// One target of one panel.
struct Query {
    panel: String,
    expr: String,
}

fn queries(dash: &Value) -> Vec<Query> {
    all_panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| Query {
                    panel: title.clone(),
                    expr: t["expr"].as_str().unwrap_or("").to_string(),
                })
        })
        .collect()
}

/// The dashboard's variables and what "All" stands for in each.
fn variables(dash: &Value) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for v in dash["templating"]["list"].as_array().unwrap() {
        let all = v["allValue"].as_str().unwrap_or(".*");
        vars.insert(v["name"].as_str().unwrap().to_string(), all.to_string());
    }
    vars
}

/// `expr` with every `$name`, `${name}` and `${name:format}` replaced from
/// `vars`; an unknown variable is an error.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, len) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            let inner = &braced[..end];
            (inner.split(':').next().unwrap(), end + 2)
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], end)
        };
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable ${name} in {expr}"))?;
        out.push_str(value);
        rest = &rest[len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The text inside the parentheses that open at `s[open]`.
fn parenthesised(s: &str, open: usize) -> &str {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {s}");
}

/// The label lists of every `by (...)` in `expr`.
fn by_clauses(expr: &str) -> Vec<Vec<String>> {
    expr.match_indices("by (")
        .map(|(i, m)| {
            parenthesised(expr, i + m.len() - 1)
                .split(',')
                .map(|l| l.trim().to_string())
                .collect()
        })
        .collect()
}

/// Checks a histogram expression: over `_bucket` series, by rate(), with
/// `le` kept by every aggregation.
fn check_bucket_expr(what: &str, inner: &str, problems: &mut Vec<String>) {
    if !inner.contains("_bucket") {
        problems.push(format!("{what}: not over a _bucket series: {inner}"));
    }
    if !inner.contains("rate(") {
        problems.push(format!("{what}: buckets not rated: {inner}"));
    }
    let clauses = by_clauses(inner);
    if clauses.is_empty() || clauses.iter().any(|c| !c.iter().any(|l| l == "le")) {
        problems.push(format!("{what}: an aggregation drops `le`: {inner}"));
    }
}

#[test]
fn dashboard_is_importable_and_consistent() {
    let dash = dashboard();
    let mut problems = Vec::new();

    // Importable with a datasource chosen at import time.
    let inputs = dash["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "__inputs lacks the DS_PROMETHEUS datasource input: {inputs:?}"
    );
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // Variables: instance and container, multi-valued with "All".
    let vars = dash["templating"]["list"].as_array().expect("templating");
    for (name, needle) in [("instance", "sonde_build_info"), ("container", "name)")] {
        let v = vars
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"));
        let q = v["definition"].as_str().unwrap_or("");
        assert!(
            q.starts_with("label_values(") && q.contains(needle),
            "{name}: {q}"
        );
        assert_eq!(v["query"]["query"], v["definition"], "{name}");
        assert_eq!(v["multi"], true, "{name} multi");
        assert_eq!(v["includeAll"], true, "{name} includeAll");
        assert_eq!(v["datasource"]["uid"], DS, "{name} datasource");
    }

    // The rows the dashboard promises, in order.
    let rows: Vec<&str> = all_panels(&dash)
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        ["Host overview", "Latency", "Containers", "Agent health"]
    );

    let mut ids = HashSet::new();
    for p in all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"].as_u64().unwrap_or(0);
        if !ids.insert(id) {
            problems.push(format!("{title}: duplicate panel id {id}"));
        }
        let g = &p["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        match (x, w, h) {
            (Some(x), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24 => {}
            _ => problems.push(format!("{title}: bad gridPos {g}")),
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"]["uid"] != DS || p["datasource"]["type"] != "prometheus" {
            problems.push(format!("{title}: datasource {}", p["datasource"]));
        }
        let unit = if p["type"] == "heatmap" {
            &p["options"]["yAxis"]["unit"]
        } else {
            &p["fieldConfig"]["defaults"]["unit"]
        };
        if unit.as_str().is_none_or(str::is_empty) {
            problems.push(format!("{title}: no unit"));
        }
        let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            problems.push(format!("{title}: no targets"));
        }
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            if expr.is_empty() {
                problems.push(format!("{title}: a target without expr"));
            }
            if t["datasource"]["uid"] != DS {
                problems.push(format!("{title}: target datasource {}", t["datasource"]));
            }
            if !expr.contains("instance=~\"$instance\"") {
                problems.push(format!("{title}: not filtered by $instance: {expr}"));
            }
            if rows_of(&dash, p) == Some("Containers") && !expr.contains("name=~\"$container\"") {
                problems.push(format!("{title}: not filtered by $container: {expr}"));
            }
            for (i, m) in expr.match_indices("histogram_quantile(") {
                let args = parenthesised(expr, i + m.len() - 1);
                let inner = args.split_once(',').map_or("", |(_, e)| e);
                check_bucket_expr(title, inner, &mut problems);
            }
            if p["type"] == "heatmap" {
                if t["format"] != "heatmap" {
                    problems.push(format!("{title}: heatmap target format {}", t["format"]));
                }
                check_bucket_expr(title, expr, &mut problems);
            }
            if let Err(e) = substitute(expr, &variables(&dash)) {
                problems.push(format!("{title}: {e}"));
            }
        }
    }
    // No datasource anywhere but the input (the built-in annotation aside).
    let text = serde_json::to_string(&dash).unwrap();
    for (i, _) in text.match_indices("\"uid\":\"") {
        let uid = &text[i + 7..];
        let uid = &uid[..uid.find('"').unwrap()];
        if uid != DS && uid != "-- Grafana --" && uid != dash["uid"].as_str().unwrap() {
            problems.push(format!("a datasource uid {uid}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The title of the row `panel` is in: the row it is nested in, or the last
/// row above it at the top level.
fn rows_of<'a>(dash: &'a Value, panel: &Value) -> Option<&'a str> {
    let mut row = None;
    for p in dash["panels"].as_array()? {
        if p["type"] == "row" {
            row = p["title"].as_str();
            if p["panels"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c == panel)
            {
                return row;
            }
        } else if p == panel {
            return row;
        }
    }
    None
}

/// Whether any sample of an instant vector is a number (NaN is what an
/// empty histogram or 0/0 gives, and Grafana draws nothing for it).
fn has_value(result: &[Value]) -> bool {
    result.iter().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| !v.is_nan())
    })
}

/// Grafana's `label_values(selector, label)` as a PromQL query that has one
/// series per value of `label`.
fn label_values_query(definition: &str, vars: &BTreeMap<String, String>) -> String {
    let args = definition
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {definition}"));
    let (selector, label) = args.rsplit_once(',').unwrap();
    let selector = substitute(selector.trim(), vars).unwrap();
    format!("count by ({}) ({selector})", label.trim())
}

/// Evaluates every query (exprs substituted with `vars`); the failures as
/// "panel: expr: why" lines.
fn failures(prom: &Prometheus, qs: &[Query], vars: &BTreeMap<String, String>) -> Vec<String> {
    qs.iter()
        .filter_map(|q| {
            let expr = substitute(&q.expr, vars).unwrap();
            let why = match prom.query_checked(&expr) {
                Err(e) => e,
                Ok(r) if r.is_empty() => "empty result".to_string(),
                Ok(r) if !has_value(&r) => format!("only NaN: {r:?}"),
                Ok(_) => return None,
            };
            Some(format!("{}\n    {expr}\n    -> {why}", q.panel))
        })
        .collect()
}

/// Starts `sh -c script` in `cgroup` (it moves itself in before it execs),
/// in a process group of its own.
fn spawn_in(cgroup: &TestCgroup, script: &str) -> Child {
    let mut c = cgroup.command("sh", &["-c", script]);
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    c.spawn().expect("start the cgroup's workload")
}

/// Kills the whole process group of a workload, and reaps its leader.
struct Workload(Child);

impl Drop for Workload {
    fn drop(&mut self) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// kernel.bpf_stats_enabled=1 while it lives (the BPF run time panels read
/// it), then what it was.
struct BpfStats(String);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> BpfStats {
        let was = std::fs::read_to_string(BPF_STATS).unwrap_or_else(|e| panic!("{BPF_STATS}: {e}"));
        std::fs::write(BPF_STATS, "1").unwrap_or_else(|e| panic!("{BPF_STATS}: {e}"));
        BpfStats(was.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.0);
    }
}

/// The host-wide workload, on a thread until `stop`: loopback TCP
/// connects, direct (O_DIRECT) writes to a file on a real disk with a
/// flush, and the syscalls all that makes.
fn host_workload(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::thread::spawn(move || {
        let path = dir.path().join("direct");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .unwrap_or_else(|e| panic!("O_DIRECT open {}: {e}", path.display()));
        // O_DIRECT wants a buffer aligned to the logical block size.
        let layout = std::alloc::Layout::from_size_align(64 * 1024, 4096).unwrap();
        // SAFETY: a non-zero size; freed below with the same layout.
        let buf = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!buf.is_null());
        // SAFETY: `buf` is `layout.size()` initialised bytes.
        let block = unsafe { std::slice::from_raw_parts(buf, layout.size()) };
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let conn = std::net::TcpStream::connect(addr).expect("loopback connect");
            while listener.accept().is_ok() {}
            drop(conn);
            if n.is_multiple_of(16) {
                use std::io::Seek as _;
                file.seek(std::io::SeekFrom::Start(0)).unwrap();
            }
            file.write_all(block).expect("direct write");
            file.sync_data().unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: allocated above with `layout`.
        unsafe { std::alloc::dealloc(buf, layout) };
    })
}

#[test]
fn every_panel_query_returns_data() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the dashboard test needs root (BPF samplers, cgroups, bpf_stats)"
    );
    let dash = dashboard();
    let qs = queries(&dash);
    assert!(qs.len() > 40, "only {} queries", qs.len());

    let _stats = BpfStats::enable();
    // At the top level, so cgroup2 needs no controller enabled below the
    // root; named like a systemd unit, which is its `name` label.
    let cgroup = TestCgroup::new(&format!("sondedash{}.service", std::process::id()));
    let cgroup_name = cgroup.path.clone();
    cgroup.limit_cpu();
    let _busy = Workload(spawn_in(
        &cgroup,
        "while :; do dd if=/dev/zero of=/dev/null bs=512 count=2000 2>/dev/null; done",
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let host = host_workload(Arc::clone(&stop));

    // Every sampler the dashboard reads, on short intervals: syscall
    // latency timed (1 in 64), TCP RTT, filesystems and cgroups each second,
    // cgroups exported at once.
    let agent = Agent::start_with(|c| {
        c.set("samplers.syscall.latency", "sampled")
            .set("samplers.tcp.interval", "1s")
            .set("samplers.filesystem.interval", "1s")
            .set("samplers.cgroup.interval", "1s")
            .set("samplers.cgroup.min_age", "0s")
    });
    let prom = Prometheus::scraping(agent.port);
    let started = Instant::now();
    wait_for("the first scrape", Duration::from_secs(30), || {
        prom.query("sonde_build_info")
    });

    // The variables' own queries list this agent and the test's cgroup.
    let vars = variables(&dash);
    let instance = format!("127.0.0.1:{}", agent.port);
    for v in dash["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let want = match name {
            "instance" => &instance,
            "container" => &cgroup_name,
            other => panic!("a variable the test does not know: {other}"),
        };
        let q = label_values_query(v["definition"].as_str().unwrap(), &vars);
        wait_for(
            &format!("variable {name} ({q}) to list {want}"),
            Duration::from_secs(30),
            || {
                let label = q.split_once("by (").unwrap().1.split(')').next().unwrap();
                prom.query_checked(&q)
                    .ok()?
                    .iter()
                    .any(|s| s["metric"][label] == want.as_str())
                    .then_some(())
            },
        );
    }

    // Every panel query, with the variables at "All"; retried while the
    // rate windows fill, until all return data.
    let deadline = started + Duration::from_secs(75);
    loop {
        let failed = failures(&prom, &qs, &vars);
        if failed.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} panel queries return no data:\n{}",
            failed.len(),
            qs.len(),
            failed.join("\n")
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // The container panels with the test's cgroup picked: its own CPU,
    // memory, run-queue wait, syscalls, throttling, block I/O.
    let mut picked = vars.clone();
    picked.insert("container".to_string(), cgroup_name.replace('.', "\\\\."));
    let container_qs: Vec<Query> = qs
        .into_iter()
        .filter(|q| q.expr.contains("$container"))
        .collect();
    assert!(
        container_qs.len() >= 6,
        "{} container queries",
        container_qs.len()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let failed = failures(&prom, &container_qs, &picked);
        if failed.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "container panels show no data for {}:\n{}",
            cgroup_name,
            failed.join("\n")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Its quota held it back, and the throttling panel shows it.
    let throttled = format!(
        "sum(rate(container_cpu_cfs_throttled_seconds_total{{name=\"{}\"}}[15s]))",
        cgroup_name
    );
    let t = prom.query(&throttled).unwrap_or(0.0);
    assert!(t > 0.0, "{throttled} = {t}");

    stop.store(true, Ordering::Relaxed);
    host.join().unwrap();
    eprintln!("dashboard checked in {:?}", started.elapsed());
}
