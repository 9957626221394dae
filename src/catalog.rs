//! Keeps docs/metrics.md and config/agent.toml in step with what the binary
//! registers, and pins the Prometheus family names dashboards depend on.
//! On a mismatch the test prints the table to paste into docs/metrics.md.

use crate::prometheus::names;
use crate::registry::{families, Kind, Unit};
use crate::samplers::SAMPLERS;

const METRICS_MD: &str = include_str!("../docs/metrics.md");
const AGENT_TOML: &str = include_str!("../config/agent.toml");

/// Every Prometheus family name Sonde serves (any mode). Renaming one
/// breaks users' dashboards and alerts: change this list only on purpose.
const FAMILIES: &[&str] = &[
    "blockio_bytes_total",
    "blockio_errors_total",
    "blockio_latency_seconds",
    "blockio_operations_total",
    "blockio_size_bytes",
    "cpu_cores",
    "cpu_migrations_total",
    "cpu_tlb_flushes_total",
    "cpu_usage_seconds_total",
    "disk_bytes_total",
    "disk_in_flight",
    "disk_io_seconds_total",
    "disk_operations_total",
    "disk_seconds_total",
    "filesystem_avail_bytes",
    "filesystem_files",
    "filesystem_files_free",
    "filesystem_free_bytes",
    "filesystem_size_bytes",
    "filesystem_stalled",
    "interface_bytes_total",
    "interface_drops_total",
    "interface_errors_total",
    "interface_packets_total",
    "load_average",
    "load_tasks_blocked",
    "load_tasks_running",
    "memory_available_bytes",
    "memory_buffers_bytes",
    "memory_cached_bytes",
    "memory_free_bytes",
    "memory_major_page_faults_total",
    "memory_oom_kills_total",
    "memory_page_faults_total",
    "memory_swap_free_bytes",
    "memory_swap_in_pages_total",
    "memory_swap_out_pages_total",
    "memory_swap_total_bytes",
    "memory_total_bytes",
    "namedprocess_namegroup_cpu_seconds_total",
    "namedprocess_namegroup_memory_bytes",
    "namedprocess_namegroup_num_procs",
    "namedprocess_namegroup_num_threads",
    "namedprocess_namegroup_open_filedesc",
    "namedprocess_namegroup_read_bytes_total",
    "namedprocess_namegroup_write_bytes_total",
    "network_bytes_total",
    "network_drops_total",
    "network_packets_total",
    "network_transmit_timeouts_total",
    "pressure_stall_seconds_total",
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
    "scheduler_context_switches_total",
    "scheduler_offcpu_seconds",
    "scheduler_running_seconds",
    "scheduler_runqueue_latency_seconds",
    "softirq_seconds_total",
    "softirq_total",
    "sonde_bpf_discarded_events_total",
    "sonde_bpf_map_memory_bytes",
    "sonde_bpf_program_attached",
    "sonde_bpf_program_misses_total",
    "sonde_bpf_program_run_seconds_total",
    "sonde_bpf_program_runs_total",
    "sonde_build_info",
    "sonde_config_last_reload_success_timestamp_seconds",
    "sonde_config_reloads_total",
    "sonde_exporter_dropped_series_total",
    "sonde_exporter_pull_duration_seconds",
    "sonde_exporter_pull_errors_total",
    "sonde_exporter_pulls_total",
    "sonde_exporter_resets_total",
    "sonde_exporter_series",
    "sonde_exporter_source_up",
    "sonde_http_requests_rejected_total",
    "sonde_processes_groups_dropped_total",
    "sonde_processes_walk_duration_seconds",
    "sonde_push_backlog",
    "sonde_push_last_success_timestamp_seconds",
    "sonde_push_pulls_total",
    "sonde_push_retries_total",
    "sonde_push_samples_sent_total",
    "sonde_push_snapshots_dropped_total",
    "sonde_push_spool_bytes",
    "sonde_push_spool_oldest_age_seconds",
    "sonde_refreshes_total",
    "sonde_sampler_errors_total",
    "sonde_sampler_refresh_duration_seconds",
    "sonde_sampler_up",
    "syscall_latency_seconds",
    "syscalls_total",
    "tcp_bytes_total",
    "tcp_connect_latency_seconds",
    "tcp_jitter_seconds",
    "tcp_packets_total",
    "tcp_resets_total",
    "tcp_retransmits_total",
    "tcp_size_bytes",
    "tcp_srtt_seconds",
    "sonde_hindsight_buffer_bytes",
    "sonde_hindsight_buffer_samples",
    "sonde_hindsight_buffer_span_seconds",
    "sonde_hindsight_dumps_total",
    "sonde_hindsight_pulls_total",
    "cgroup_context_switches_total",
    "cgroup_oncpu_seconds_total",
    "cgroup_runqueue_wait_seconds_total",
    "cgroup_syscalls_total",
    "container_cpu_cfs_periods_total",
    "container_cpu_cfs_throttled_periods_total",
    "container_cpu_cfs_throttled_seconds_total",
    "container_cpu_system_seconds_total",
    "container_cpu_usage_seconds_total",
    "container_cpu_user_seconds_total",
    "container_fs_reads_bytes_total",
    "container_fs_writes_bytes_total",
    "container_memory_cache",
    "container_memory_rss",
    "container_memory_usage_bytes",
    "container_memory_working_set_bytes",
    "container_oom_events_total",
    "container_pressure_cpu_stalled_seconds_total",
    "container_pressure_cpu_waiting_seconds_total",
    "container_pressure_io_stalled_seconds_total",
    "container_pressure_io_waiting_seconds_total",
    "container_pressure_memory_stalled_seconds_total",
    "container_pressure_memory_waiting_seconds_total",
    "container_spec_cpu_period",
    "container_spec_cpu_quota",
    "container_spec_memory_limit_bytes",
    "sonde_cgroup_pass_seconds",
    "sonde_cgroups",
    "sonde_cgroups_dropped_total",
];

fn ours() -> impl Iterator<Item = &'static &'static crate::registry::Family> {
    families().iter().filter(|f| f.desc.sampler != "test")
}

/// The catalog as docs/metrics.md must show it, one row per family, in
/// Prometheus-name order.
fn catalog() -> String {
    let mut rows: Vec<(String, String)> = ours()
        .map(|f| {
            let d = &f.desc;
            let unit = match d.unit {
                Unit::Nanoseconds => "seconds",
                Unit::Count | Unit::Milli => "",
                u => u.as_str(),
            };
            let kind = match d.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let prom = names::of(d);
            let row = format!(
                "| `{prom}` | `{}` | {kind} | {unit} | {} | {} | {} | {} |\n",
                d.name,
                d.labels.join(", "),
                d.sampler,
                d.source,
                d.help
            );
            (prom, row)
        })
        .collect();
    rows.sort();
    let mut out = String::from(
        "| metric | registry name | type | unit | labels | sampler | source | description |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (_, row) in rows {
        out.push_str(&row);
    }
    out
}

#[test]
fn metrics_md_catalog_matches_the_registry() {
    let start = METRICS_MD
        .find("<!-- catalog:start -->\n")
        .expect("docs/metrics.md catalog start marker")
        + 23;
    let end = METRICS_MD
        .find("<!-- catalog:end -->")
        .expect("docs/metrics.md catalog end marker");
    let expected = catalog();
    assert!(
        METRICS_MD[start..end] == expected,
        "docs/metrics.md catalog is out of date; replace it with:\n\n{expected}"
    );
}

#[test]
fn prometheus_family_names_are_pinned() {
    let mut served: Vec<String> = ours().map(|f| names::of(&f.desc)).collect();
    served.sort();
    let mut pinned: Vec<String> = FAMILIES.iter().map(|s| s.to_string()).collect();
    pinned.sort();
    assert_eq!(served, pinned, "a Prometheus family name changed");
}

/// A sampler's config name, its Rust module and its families' `sampler`
/// field agree: `scheduler` is samplers/scheduler.rs and fills families
/// marked `scheduler`; the modes' own metrics are `sonde`, `exporter`,
/// `push`.
#[test]
fn sampler_names_modules_and_families_agree() {
    let samplers: Vec<&str> = SAMPLERS.iter().map(|s| s.name).collect();
    for f in ours() {
        let d = &f.desc;
        let module = d.module.strip_prefix("sonde::").unwrap_or(d.module);
        match module.strip_prefix("samplers::") {
            Some(rest) => {
                let file = rest.split("::").next().unwrap_or(rest);
                assert_eq!(file, d.sampler, "{} is declared in {}", d.name, d.module);
                assert!(
                    samplers.contains(&d.sampler),
                    "{}: no sampler {}",
                    d.name,
                    d.sampler
                );
            }
            None => assert!(
                ["sonde", "exporter", "push", "hindsight"].contains(&d.sampler),
                "{} ({}) is outside samplers/ but says sampler {}",
                d.name,
                d.module,
                d.sampler
            ),
        }
    }
    for name in samplers {
        assert!(
            ours().any(|f| f.desc.sampler == name),
            "sampler {name} declares no family"
        );
    }
}

#[test]
fn agent_toml_documents_every_sampler() {
    for spec in SAMPLERS {
        let header = format!("[samplers.{}]", spec.name);
        assert!(
            AGENT_TOML.contains(&header),
            "config/agent.toml lacks {header}"
        );
    }
}
