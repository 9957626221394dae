//! `sonde view` on the day's recording: the server's answer for every
//! section at a 1200-pixel width (median of three), the page in headless
//! Chromium from load to its first chart drawn and to each section drawn
//! (tests/view_browser.py in bench mode), and the viewer's peak RSS.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::analysis::Row;
use super::sonde_bin;

struct Viewer {
    child: Child,
    port: u16,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(file: &Path) -> Result<Viewer> {
    let mut child = Command::new(sonde_bin())
        .args(["view", file.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line?;
        if let Some(rest) = line.split("listening on http://127.0.0.1:").nth(1) {
            let port = rest.split('/').next().unwrap_or("").parse()?;
            return Ok(Viewer { child, port });
        }
    }
    bail!("sonde view did not start listening")
}

fn get(port: u16, path: &str) -> Result<Duration> {
    let t = Instant::now();
    let r = super::proc::get_once(port, path, true)?;
    if r.status != 200 {
        bail!("GET {path}: {}", String::from_utf8_lossy(&r.body));
    }
    Ok(t.elapsed())
}

fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub fn measure(file: &Path) -> Result<Vec<Row>> {
    let v = start(file)?;
    let mut rows = Vec::new();
    let info = super::proc::get_once(v.port, "/api/info", false)?;
    let info: serde_json::Value = serde_json::from_slice(&info.body)?;
    let sections: Vec<String> = info["sections"]
        .as_array()
        .context("/api/info lists no sections")?
        .iter()
        .filter_map(|s| s["id"].as_str().map(String::from))
        .collect();
    // The server: every section over the whole day at 1200 px.
    let mut slowest = (Duration::ZERO, "");
    for s in &sections {
        let mut runs = (0..3)
            .map(|_| get(v.port, &format!("/api/section?id={s}&px=1200")))
            .collect::<Result<Vec<_>>>()?;
        runs.sort();
        if runs[1] > slowest.0 {
            slowest = (runs[1], s.as_str());
        }
    }
    rows.push(Row {
        what: format!(
            "viewer: slowest section's answer, 24 h at 1200 px ({})",
            slowest.1
        ),
        wall: slowest.0,
        peak_rss: vm_hwm(v.child.id()),
        target: "≤ 2 s",
        note: "GET /api/section, median of 3".into(),
    });
    // The page in Chromium.
    let shots = crate::target_dir().join("bench/view");
    std::fs::create_dir_all(&shots)?;
    let args = serde_json::json!({
        "url": format!("http://127.0.0.1:{}", v.port),
        "tag": "bench",
        "shots": shots,
        "bench": true,
    });
    let out = Command::new("python3")
        .arg(crate::root().join("tests/view_browser.py"))
        .arg(args.to_string())
        .output()
        .context("python3 tests/view_browser.py (cargo xtask test installs Playwright)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "the browser run failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))?;
    let ms = |v: &serde_json::Value| Duration::from_millis(v.as_u64().unwrap_or(0));
    let (worst, name) = sections
        .iter()
        .map(|s| (ms(&r[s.as_str()]["ms"]), s.as_str()))
        .max()
        .unwrap_or_default();
    let rss = vm_hwm(v.child.id());
    rows.push(Row {
        what: "viewer: page load to the first chart drawn, 24 h (Chromium)".into(),
        wall: ms(&r["first_chart_ms"]),
        peak_rss: rss,
        target: "≤ 1 s",
        note: format!(
            "overview, 6 charts; median of 3 loads in fresh tabs {}",
            r["first_chart_loads_ms"]
        ),
    });
    rows.push(Row {
        what: format!("viewer: slowest section drawn, 24 h (Chromium; {name})"),
        wall: worst,
        peak_rss: rss,
        target: "≤ 2 s; RSS ≤ 300 MB",
        note: "from the click to the section drawn".into(),
    });
    Ok(rows)
}
