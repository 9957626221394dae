//! The sections' contents: every chart, by the families it draws.

use super::{
    cg, heat, lines, named, part, pressure, stall, top, Chart, Match, Part, Section, Unit, NS,
};

const CPU_BUSY: Part = Part {
    metrics: &["cpu_usage"],
    keep: &[Match::Ne("state", "idle")],
    by: &["state"],
    name: None,
    scale: NS,
};

const RUNQUEUE: Chart = heat(
    "runqueue",
    "Run-queue wait (time runnable before running)",
    Unit::Seconds,
    &["scheduler_runqueue_latency"],
    NS,
);

const SYSCALLS_TOTAL: Part = named(&["syscalls", "syscall"], "syscalls", 1.0);

const CPU_PRESSURE: [Match; 1] = pressure("cpu");
const IO_PRESSURE: [Match; 1] = pressure("io");
const MEM_PRESSURE: [Match; 1] = pressure("memory");

const RESIDENT: &[Match] = &[Match::Eq("memtype", "resident")];

pub const SECTIONS: &[Section] = &[
    Section {
        id: "overview",
        title: "Overview",
        cgroup: false,
        charts: &[
            lines(
                "cpu_busy",
                "CPU time, by state (idle left out)",
                Unit::Cores,
                &[CPU_BUSY],
            ),
            RUNQUEUE,
            lines(
                "syscalls_total",
                "System calls",
                Unit::PerSec,
                &[SYSCALLS_TOTAL],
            ),
            lines(
                "memory_overview",
                "Memory",
                Unit::Bytes,
                &[
                    named(
                        &["memory_available_bytes", "memory_available"],
                        "available",
                        1.0,
                    ),
                    named(&["memory_cached_bytes", "memory_cached"], "cached", 1.0),
                ],
            ),
            lines(
                "disk_overview",
                "Disk I/O",
                Unit::BytesPerSec,
                &[part(&["disk_bytes"], &["op"], 1.0)],
            ),
            lines(
                "network_overview",
                "Network",
                Unit::BytesPerSec,
                &[part(&["network_bytes"], &["direction"], 1.0)],
            ),
        ],
    },
    Section {
        id: "cpu",
        title: "CPU",
        cgroup: false,
        charts: &[
            lines(
                "cpu_state",
                "CPU time, by state (idle left out)",
                Unit::Cores,
                &[CPU_BUSY],
            ),
            lines(
                "cpu_percpu",
                "CPU busy, by CPU",
                Unit::Cores,
                // Busy: neither idle nor waiting for I/O. Rezolus names a
                // CPU `id`.
                &[Part {
                    keep: &[Match::Ne("state", "idle"), Match::Ne("state", "iowait")],
                    by: &["cpu", "id"],
                    ..CPU_BUSY
                }],
            ),
            lines(
                "cpu_pressure",
                "CPU pressure stall",
                Unit::Cores,
                &[stall(&CPU_PRESSURE)],
            ),
            lines(
                "load",
                "Load average",
                Unit::Count,
                &[part(&["load_average"], &["window"], 1e-3)],
            ),
            lines(
                "tasks",
                "Tasks",
                Unit::Count,
                &[
                    named(&["load_tasks_running"], "running", 1.0),
                    named(&["load_tasks_blocked"], "blocked", 1.0),
                ],
            ),
            lines(
                "migrations",
                "CPU migrations",
                Unit::PerSec,
                &[named(&["cpu_migrations"], "migrations", 1.0)],
            ),
        ],
    },
    Section {
        id: "memory",
        title: "Memory",
        cgroup: false,
        charts: &[
            lines(
                "memory",
                "Memory",
                Unit::Bytes,
                &[
                    named(&["memory_total_bytes", "memory_total"], "total", 1.0),
                    named(
                        &["memory_available_bytes", "memory_available"],
                        "available",
                        1.0,
                    ),
                    named(&["memory_free_bytes", "memory_free"], "free", 1.0),
                    named(&["memory_cached_bytes", "memory_cached"], "cached", 1.0),
                    named(&["memory_buffers_bytes", "memory_buffers"], "buffers", 1.0),
                ],
            ),
            lines(
                "faults",
                "Page faults",
                Unit::PerSec,
                &[
                    named(&["memory_page_faults"], "all", 1.0),
                    named(&["memory_major_page_faults"], "major", 1.0),
                ],
            ),
            lines(
                "swap",
                "Swap",
                Unit::PerSec,
                &[
                    named(&["memory_swap_in_pages"], "pages in", 1.0),
                    named(&["memory_swap_out_pages"], "pages out", 1.0),
                ],
            ),
            lines(
                "memory_pressure",
                "Memory pressure stall",
                Unit::Cores,
                &[stall(&MEM_PRESSURE)],
            ),
            lines(
                "oom",
                "OOM kills",
                Unit::PerSec,
                &[named(&["memory_oom_kills"], "kills", 1.0)],
            ),
        ],
    },
    Section {
        id: "scheduler",
        title: "Scheduler",
        cgroup: false,
        charts: &[
            RUNQUEUE,
            heat(
                "running",
                "Time on CPU per slice",
                Unit::Seconds,
                &["scheduler_running"],
                NS,
            ),
            heat(
                "offcpu",
                "Time off CPU",
                Unit::Seconds,
                &["scheduler_offcpu"],
                NS,
            ),
            lines(
                "context_switches",
                "Context switches",
                Unit::PerSec,
                &[part(&["scheduler_context_switches"], &["kind"], 1.0)],
            ),
            lines(
                "sched_pressure",
                "CPU pressure stall",
                Unit::Cores,
                &[stall(&CPU_PRESSURE)],
            ),
        ],
    },
    Section {
        id: "syscalls",
        title: "Syscalls",
        cgroup: false,
        charts: &[
            lines(
                "syscalls_by_class",
                "System calls, by class",
                Unit::PerSec,
                &[part(&["syscalls", "syscall"], &["op"], 1.0)],
            ),
            heat(
                "syscall_latency",
                "System call latency",
                Unit::Seconds,
                &["syscall_latency"],
                NS,
            ),
            lines(
                "syscalls_all",
                "System calls, all",
                Unit::PerSec,
                &[SYSCALLS_TOTAL],
            ),
        ],
    },
    Section {
        id: "blockio",
        title: "Block I/O",
        cgroup: false,
        charts: &[
            heat(
                "blockio_latency",
                "Block I/O latency",
                Unit::Seconds,
                &["blockio_latency"],
                NS,
            ),
            heat(
                "blockio_size",
                "Block I/O size",
                Unit::Bytes,
                &["blockio_size_bytes", "blockio_size"],
                1.0,
            ),
            lines(
                "blockio_bytes",
                "Block I/O bytes, by op",
                Unit::BytesPerSec,
                &[part(&["blockio_bytes"], &["op"], 1.0)],
            ),
            lines(
                "blockio_ops",
                "Block I/O operations, by op",
                Unit::PerSec,
                &[part(&["blockio_operations"], &["op"], 1.0)],
            ),
            lines(
                "disk_bytes",
                "Disk bytes, by device and op",
                Unit::BytesPerSec,
                &[part(&["disk_bytes"], &["device", "op"], 1.0)],
            ),
            lines(
                "disk_busy",
                "Disk busy time",
                Unit::Cores,
                &[part(&["disk_io_time"], &["device"], NS)],
            ),
            lines(
                "io_pressure",
                "I/O pressure stall",
                Unit::Cores,
                &[stall(&IO_PRESSURE)],
            ),
        ],
    },
    Section {
        id: "network",
        title: "Network",
        cgroup: false,
        charts: &[
            lines(
                "network_bytes",
                "Network bytes",
                Unit::BytesPerSec,
                &[part(&["network_bytes"], &["direction"], 1.0)],
            ),
            lines(
                "interface_bytes",
                "Bytes, by interface",
                Unit::BytesPerSec,
                &[part(&["interface_bytes"], &["interface", "direction"], 1.0)],
            ),
            lines(
                "tcp_packets",
                "TCP packets",
                Unit::PerSec,
                &[part(&["tcp_packets"], &["direction"], 1.0)],
            ),
            lines(
                "tcp_trouble",
                "TCP retransmits and resets",
                Unit::PerSec,
                &[
                    named(&["tcp_retransmits", "tcp_retransmit"], "retransmits", 1.0),
                    part(&["tcp_resets", "tcp_reset"], &["direction"], 1.0),
                ],
            ),
            heat(
                "tcp_connect",
                "TCP connect latency",
                Unit::Seconds,
                &["tcp_connect_latency"],
                NS,
            ),
            heat(
                "tcp_srtt",
                "TCP smoothed round-trip time",
                Unit::Seconds,
                &["tcp_srtt"],
                NS,
            ),
            heat(
                "tcp_jitter",
                "TCP jitter",
                Unit::Seconds,
                &["tcp_jitter"],
                NS,
            ),
        ],
    },
    Section {
        id: "softirq",
        title: "Softirq",
        cgroup: false,
        charts: &[
            lines(
                "softirq_kind",
                "Softirqs, by kind",
                Unit::PerSec,
                &[part(&["softirq"], &["kind"], 1.0)],
            ),
            lines(
                "softirq_cpu",
                "Softirqs, by CPU",
                Unit::PerSec,
                &[part(&["softirq"], &["cpu"], 1.0)],
            ),
            lines(
                "softirq_time",
                "Softirq CPU time",
                Unit::Cores,
                &[Part {
                    keep: &[Match::Eq("state", "softirq")],
                    by: &[],
                    name: Some("softirq"),
                    ..CPU_BUSY
                }],
            ),
        ],
    },
    Section {
        id: "containers",
        title: "Containers",
        cgroup: true,
        charts: &[
            lines(
                "container_cpu",
                "CPU",
                Unit::Cores,
                &[
                    cg(&["container_cpu_user"], &[], "user", NS),
                    cg(&["container_cpu_system"], &[], "system", NS),
                    cg(&["container_cpu_cfs_throttled"], &[], "throttled", NS),
                ],
            ),
            lines(
                "container_memory",
                "Memory",
                Unit::Bytes,
                &[
                    cg(&["container_memory_usage_bytes"], &[], "usage", 1.0),
                    cg(
                        &["container_memory_working_set_bytes"],
                        &[],
                        "working set",
                        1.0,
                    ),
                    cg(&["container_spec_memory_limit_bytes"], &[], "limit", 1.0),
                ],
            ),
            lines(
                "container_runqueue",
                "Run-queue wait (time its tasks waited for a CPU)",
                Unit::Cores,
                &[cg(&["cgroup_runqueue_wait"], &[], "run-queue wait", NS)],
            ),
            lines(
                "container_syscalls",
                "System calls, by class",
                Unit::PerSec,
                &[cg(&["cgroup_syscalls"], &["op"], "syscalls", 1.0)],
            ),
            lines(
                "container_io",
                "Storage I/O",
                Unit::BytesPerSec,
                &[
                    cg(&["container_fs_reads_bytes"], &[], "read", 1.0),
                    cg(&["container_fs_writes_bytes"], &[], "write", 1.0),
                ],
            ),
        ],
    },
    Section {
        id: "processes",
        title: "Processes",
        cgroup: false,
        charts: &[
            top(
                "process_cpu",
                "CPU, by process group (top 8)",
                Unit::Cores,
                &[part(&["namedprocess_namegroup_cpu"], &["groupname"], NS)],
            ),
            top(
                "process_memory",
                "Resident memory, by process group (top 8)",
                Unit::Bytes,
                &[Part {
                    keep: RESIDENT,
                    ..part(
                        &["namedprocess_namegroup_memory_bytes"],
                        &["groupname"],
                        1.0,
                    )
                }],
            ),
            top(
                "process_io",
                "Storage reads and writes, by process group (top 8)",
                Unit::BytesPerSec,
                &[
                    part(&["namedprocess_namegroup_read_bytes"], &["groupname"], 1.0),
                    part(&["namedprocess_namegroup_write_bytes"], &["groupname"], 1.0),
                ],
            ),
            top(
                "process_threads",
                "Threads, by process group (top 8)",
                Unit::Count,
                &[part(
                    &["namedprocess_namegroup_num_threads"],
                    &["groupname"],
                    1.0,
                )],
            ),
        ],
    },
    Section {
        id: "agent",
        title: "Agent",
        cgroup: false,
        charts: &[
            lines(
                "agent_cpu",
                "Agent CPU",
                Unit::Cores,
                &[named(&["process_cpu"], "sonde", NS)],
            ),
            lines(
                "agent_memory",
                "Agent resident memory",
                Unit::Bytes,
                &[named(&["process_resident_memory_bytes"], "resident", 1.0)],
            ),
            top(
                "agent_refresh",
                "Refresh time, by sampler (top 8)",
                Unit::Seconds,
                &[part(&["sonde_sampler_refresh_duration"], &["sampler"], NS)],
            ),
            lines(
                "agent_bpf",
                "BPF runs missed and events discarded",
                Unit::PerSec,
                &[
                    part(&["sonde_bpf_program_misses"], &["program"], 1.0),
                    part(&["sonde_bpf_discarded_events"], &["sampler"], 1.0),
                ],
            ),
            lines(
                "agent_errors",
                "Sampler errors",
                Unit::PerSec,
                &[part(&["sonde_sampler_errors"], &["sampler"], 1.0)],
            ),
        ],
    },
];
