//! The markdown report.

use std::time::Duration;

use super::overhead::{worse, Breakdown, Compared, ProgramRow, VARIANTS};
use super::scrape::{Scrape, Side};
use super::workloads::{Kind, Target, WORKLOADS};

#[derive(Default)]
pub struct Report {
    pub text: String,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn kb(b: usize) -> String {
    format!("{:.1} KB", b as f64 / 1e3)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "—".into()
    }
}

impl Report {
    pub fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }

    pub fn row(&mut self, cells: [&str; 5]) {
        self.line(&format!("| {} |", cells.join(" | ")));
    }

    pub fn transport_table(&mut self, rows: &[super::transport::Row]) {
        self.line("\n## Securing the endpoint: agent cost per scrape\n");
        self.line("The agent's default config with a 1 h TTL (every scrape served from the cached body), scraped with gzip by curl: 400 scrapes over one keep-alive connection, then 100 scrapes each on a new connection (TCP + TLS handshake).\n");
        self.line("| transport | agent CPU per scrape, keep-alive | wall per scrape, keep-alive | agent CPU per scrape, new connection |");
        self.line("|---|---|---|---|");
        let us = |d: Duration| format!("{:.0} µs", d.as_secs_f64() * 1e6);
        for r in rows {
            self.line(&format!(
                "| {} | {} | {} | {} |",
                r.name,
                us(r.keepalive_cpu),
                us(r.keepalive_wall),
                us(r.new_conn_cpu)
            ));
        }
    }

    pub fn recorder_table(&mut self, r: &super::recorder::Recorder) {
        self.line(&format!(
            "\n## Flight recorder (`sonde record` of the full agent at 1 s, {} s)\n",
            r.secs
        ));
        self.line(
            "| CPU per sample | share of a core | peak RSS | file | writing it (Ctrl-C to exit) |",
        );
        self.line("|---|---|---|---|---|");
        self.line(&format!(
            "| {} | {:.2} % | {} | {} for {} samples ({} per sample) | {} |\n",
            ms(r.cpu_per_sample),
            r.cpu_per_sample.as_secs_f64() * 100.0,
            mb(r.peak_rss),
            mb(r.file_bytes),
            r.samples,
            kb((r.file_bytes / r.samples.max(1)) as usize),
            ms(r.write),
        ));
    }

    pub fn analysis_table(&mut self, a: &super::analysis::Analysis) {
        self.line(&format!(
            "\n## The query engine on a 24 h recording (86,400 rows of the full agent's series, {})\n",
            mb(a.file_bytes)
        ));
        self.line("| operation | wall (median of 3) | peak RSS | target | note |");
        self.line("|---|---|---|---|---|");
        for r in &a.rows {
            self.row([&r.what, &ms(r.wall), &mb(r.peak_rss), r.target, &r.note]);
        }
    }

    pub fn containers_table(&mut self, c: &super::containers::Containers) {
        self.line(&format!(
            "\n## Containers and processes ({} cgroups with a task each, {} processes, both walked every second)\n",
            super::containers::CGROUPS,
            super::containers::PROCESSES
        ));
        self.line("| cgroup pass (median) | cgroups exported | processes pass (median) | agent CPU per second | RSS |");
        self.line("|---|---|---|---|---|");
        self.line(&format!(
            "| {} | {} | {} | {} ({:.2} % of a core) | {} |\n",
            ms(c.cgroup_pass),
            c.exported,
            c.processes_pass.map_or("n/a".to_string(), ms),
            ms(c.cpu_per_sec),
            c.cpu_per_sec.as_secs_f64() * 100.0,
            mb(c.rss),
        ));
    }

    pub fn exposition_table(
        &mut self,
        text: &super::scrape::Exposition,
        native: &super::scrape::Exposition,
    ) {
        self.line(
            "\n## Series per scrape: classic histograms (text) and native histograms (protobuf)\n",
        );
        self.line(
            "| exposition | series stored per scrape | body | agent CPU per refreshing scrape |",
        );
        self.line("|---|---|---|---|");
        for (what, e) in [
            ("text 0.0.4, classic `le` buckets", text),
            (
                "protobuf, native histograms (Prometheus with native histograms on)",
                native,
            ),
        ] {
            self.line(&format!(
                "| {what} | {} | {:.1} KB | {} |",
                e.series,
                e.bytes as f64 / 1000.0,
                ms(e.cpu)
            ));
        }
        self.line("");
    }

    pub fn fleet_table(&mut self, f: &super::fleet::Fleet) {
        self.line(&format!(
            "\n## The exporter relaying {} sources (3 answer after 3 s, 2 dead; interval 1 s, timeout 500 ms)\n",
            super::fleet::SOURCES
        ));
        self.line("| healthy sources up | series served | scrape, median / worst of 20 | exporter CPU, % of a core | exporter peak RSS |");
        self.line("|---|---|---|---|---|");
        self.line(&format!(
            "| {} of 95 | {} | {} / {} | {:.1} % | {} |\n",
            f.up,
            f.series,
            ms(f.scrape_median),
            ms(f.scrape_max),
            f.cpu_per_sec.as_secs_f64() * 100.0,
            mb(f.rss),
        ));
        let p = &f.protobuf;
        self.line("The same exporter, text vs protobuf with native histograms (a scraper asking for protobuf makes it build both):\n");
        self.line("| exposition | series stored per scrape | body | scrape, median of 20 (gzip) | exporter CPU, % of a core | exporter peak RSS |");
        self.line("|---|---|---|---|---|---|");
        self.line(&format!(
            "| text (summaries) | {} | {} | {} | {:.1} % | {} |",
            f.series,
            mb(p.text_bytes as u64),
            ms(f.scrape_median),
            f.cpu_per_sec.as_secs_f64() * 100.0,
            mb(f.rss),
        ));
        self.line(&format!(
            "| protobuf (summaries + native histograms) | {} | {} | {} | {:.1} % | {} |\n",
            p.series,
            mb(p.bytes as u64),
            ms(p.scrape_median),
            p.cpu_per_sec.as_secs_f64() * 100.0,
            mb(p.rss),
        ));
    }

    pub fn fanin_table(&mut self, f: &super::fanin::FanIn) {
        self.line(&format!(
            "\n## Pusher fan-in: {} pushers (one per host, `[source] labels`) into one Prometheus (remote-write, pulls every 1 s, 30 s)\n",
            super::fanin::PUSHERS
        ));
        self.line("| samples/s received | pusher CPU, median / max, % of a core | pusher peak RSS, median / max | Prometheus CPU, % of a core | hosts complete (stored = pulled) | pulled / stored |");
        self.line("|---|---|---|---|---|---|");
        self.line(&format!(
            "| {:.0} | {:.1} % / {:.1} % | {} / {} | {:.1} % | {} of {} | {} / {} |\n",
            f.samples_per_sec,
            f.pusher_cpu.0.as_secs_f64() * 100.0,
            f.pusher_cpu.1.as_secs_f64() * 100.0,
            mb(f.pusher_rss.0),
            mb(f.pusher_rss.1),
            f.prometheus_cpu.as_secs_f64() * 100.0,
            f.complete,
            super::fanin::PUSHERS,
            f.pulled,
            f.stored,
        ));
    }

    pub fn scrape_table(
        &mut self,
        s: &Scrape,
        startup: Duration,
        startup_cpu: Duration,
        map_bytes: u64,
    ) {
        let per = |side: &Side| side.cpu / side.scrapes.max(1) as u32;
        let pct = |side: &Side| 100.0 * side.cpu.as_secs_f64() / side.secs;
        let (sp, np) = (per(&s.sonde), per(&s.node));
        self.line("\n## Scrape cost (1 Hz, same window)\n");
        self.row([
            "figure",
            "Sonde",
            "node_exporter",
            "ratio (Sonde / node)",
            "target",
        ]);
        self.row(["---", "---", "---", "---", "---"]);
        self.row([
            "CPU per scrape (refreshing)",
            &ms(sp),
            &ms(np),
            &ratio(sp.as_secs_f64(), np.as_secs_f64()),
            "≤ 0.33",
        ]);
        self.row([
            "CPU, % of one core",
            &format!("{:.3} %", pct(&s.sonde)),
            &format!("{:.3} %", pct(&s.node)),
            &ratio(pct(&s.sonde), pct(&s.node)),
            "",
        ]);
        self.row([
            "RSS",
            &mb(s.sonde.rss),
            &mb(s.node.rss),
            &ratio(s.sonde.rss as f64, s.node.rss as f64),
            "",
        ]);
        self.row([
            "peak RSS",
            &mb(s.sonde.hwm),
            &mb(s.node.hwm),
            &ratio(s.sonde.hwm as f64, s.node.hwm as f64),
            "≤ 12 MB",
        ]);
        for (name, e, n) in [
            ("/metrics", &s.sonde_metrics, Some(&s.node_metrics)),
            ("/metrics/binary", &s.sonde_binary, None),
        ] {
            let nb = n.map_or("—".to_string(), |n| kb(n.plain));
            let ng = n.map_or("—".to_string(), |n| kb(n.gzip));
            self.row([
                &format!("{name} body, plain"),
                &kb(e.plain),
                &nb,
                &n.map_or("—".into(), |n| ratio(e.plain as f64, n.plain as f64)),
                "",
            ]);
            if e.gzipped {
                self.row([
                    &format!("{name} body, gzip"),
                    &kb(e.gzip),
                    &ng,
                    &n.map_or("—".into(), |n| ratio(e.gzip as f64, n.gzip as f64)),
                    "",
                ]);
            } else {
                self.row([
                    &format!("{name} body, gzip"),
                    "not compressed",
                    &ng,
                    "—",
                    "",
                ]);
            }
            for (q, label, target) in [
                (0.5, "p50", if name == "/metrics" { "≤ 1 ms" } else { "" }),
                (0.99, "p99", ""),
            ] {
                let sv = e.quantile(q);
                let nv = n.map(|n| n.quantile(q));
                self.row([
                    &format!("{name} latency {label} (keep-alive, gzip asked)"),
                    &ms(sv),
                    &nv.map_or("—".into(), ms),
                    &nv.map_or("—".into(), |nv| ratio(sv.as_secs_f64(), nv.as_secs_f64())),
                    target,
                ]);
            }
        }
        self.row(["startup, exec to first scrape", &ms(startup), "—", "—", ""]);
        self.row([
            "startup CPU (load + attach all BPF)",
            &ms(startup_cpu),
            "—",
            "—",
            "≤ 500 ms",
        ]);
        self.row([
            "BPF map kernel memory",
            &format!("{:.1} MiB", map_bytes as f64 / (1 << 20) as f64),
            "—",
            "—",
            "≤ 32 MiB",
        ]);
    }
}

fn value(v: f64, unit: &str) -> String {
    match unit {
        "ns" | "IOPS" | "req/s" => format!("{v:.0} {unit}"),
        _ => format!("{v:.1} {unit}"),
    }
}

/// The target of workload `i` and whether `c` meets it.
fn target(i: usize, c: &Compared) -> (String, &'static str) {
    let w = &WORKLOADS[i];
    match w.target {
        Target::AddedNs(max) => {
            let added = c.on - c.off;
            (
                format!("≤ +{max:.0} ns"),
                if added <= max { "yes" } else { "**no**" },
            )
        }
        Target::Percent(max) => {
            let what = if w.kind == Kind::Rate {
                "loss"
            } else {
                "added"
            };
            let met = worse(i, c) <= max;
            (
                format!("{what} ≤ {max:.0} %"),
                if met { "yes" } else { "**no**" },
            )
        }
        Target::None => (String::new(), ""),
    }
}

impl Report {
    pub fn workload_table(&mut self, runs: usize, compared: &[Compared]) {
        self.line(&format!(
            "\n## Per-event overhead: agent off → on, all samplers (medians of {runs} alternating pairs)\n"
        ));
        self.line("| workload | off | on | change | pairs' middle half | target | met |");
        self.line("| --- | --- | --- | --- | --- | --- | --- |");
        for (i, c) in compared.iter().enumerate() {
            let w = &WORKLOADS[i];
            let change = match w.target {
                Target::AddedNs(_) => format!("{:+.1} ns", c.on - c.off),
                _ => format!("{:+.1} %", c.change_pct),
            };
            let (t, met) = target(i, c);
            self.line(&format!(
                "| {} | {} | {} | {change} | {:+.1} % … {:+.1} % | {t} | {met} |",
                w.name,
                value(c.off, w.unit),
                value(c.on, w.unit),
                c.spread.0,
                c.spread.1
            ));
        }
    }

    pub fn program_table(&mut self, rows: &[ProgramRow]) {
        self.line(
            "\n## BPF programs per workload operation (kernel.bpf_stats_enabled=1, all samplers)\n",
        );
        self.line("Runs of each program per operation of the workload, and the time spent inside it per run (the kernel's run_time_ns: it excludes the cost of calling the program, which the floor table below shows).\n");
        self.line("| workload | sampler | program | runs per op | ns per run | ns per op |");
        self.line("| --- | --- | --- | --- | --- | --- |");
        for r in rows {
            let per_op = r.runs / r.ops.max(1) as f64;
            if per_op < 0.01 {
                continue;
            }
            self.line(&format!(
                "| {} | {} | {} | {:.2} per {} | {:.0} | {:.0} |",
                WORKLOADS[r.workload].name,
                r.sampler,
                r.program,
                per_op,
                WORKLOADS[r.workload].op,
                r.ns / r.runs,
                r.ns / r.ops.max(1) as f64
            ));
        }
    }

    pub fn breakdown_table(&mut self, runs: usize, b: &Breakdown) {
        self.line(&format!(
            "\n## Each eBPF sampler alone vs agent off (medians of {runs} alternating pairs)\n"
        ));
        self.line("| agent running | nginx req/s off → on | nginx change | `getppid()` added | ping-pong change |");
        self.line("| --- | --- | --- | --- | --- |");
        for (i, v) in VARIANTS.iter().enumerate() {
            let (n, g, p) = (&b.nginx[i], &b.getppid[i], &b.pingpong[i]);
            self.line(&format!(
                "| {} | {:.0} → {:.0} | {:+.1} % | {:+.1} ns | {:+.1} % |",
                v.name,
                n.off,
                n.on,
                n.change_pct,
                g.on - g.off,
                p.change_pct
            ));
        }
    }
}
