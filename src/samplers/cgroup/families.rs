//! The cgroup sampler's metric families: cAdvisor's names for what
//! cgroupfs gives, `cgroup_*` for what the BPF programs count.

macro_rules! cgroup_family {
    ($static:ident, $kind:ident, $name:literal, $unit:ident, $source:literal, $help:literal) => {
        crate::family! {
            pub(super) static $static: $kind {
                name: $name,
                unit: $unit,
                labels: ["id", "container_id", "name", "image", "pod", "namespace"],
                sampler: super::NAME,
                source: $source,
                help: $help,
            }
        }
    };
}

cgroup_family!(
    CPU_USAGE,
    Counter,
    "container_cpu_usage",
    Nanoseconds,
    "cpu.stat usage_usec / cpuacct.usage",
    "CPU time used by the cgroup's tasks (user + system)."
);
cgroup_family!(
    CPU_USER,
    Counter,
    "container_cpu_user",
    Nanoseconds,
    "cpu.stat user_usec / cpuacct.stat",
    "User-mode CPU time of the cgroup's tasks."
);
cgroup_family!(
    CPU_SYSTEM,
    Counter,
    "container_cpu_system",
    Nanoseconds,
    "cpu.stat system_usec / cpuacct.stat",
    "Kernel-mode CPU time of the cgroup's tasks."
);
cgroup_family!(
    CFS_PERIODS,
    Counter,
    "container_cpu_cfs_periods",
    Count,
    "cpu.stat nr_periods",
    "Enforcement periods of the cgroup's CPU quota that elapsed."
);
cgroup_family!(
    CFS_THROTTLED_PERIODS,
    Counter,
    "container_cpu_cfs_throttled_periods",
    Count,
    "cpu.stat nr_throttled",
    "Periods in which the cgroup was throttled (used up its quota)."
);
cgroup_family!(
    CFS_THROTTLED,
    Counter,
    "container_cpu_cfs_throttled",
    Nanoseconds,
    "cpu.stat throttled_usec / throttled_time",
    "Time the cgroup's tasks were throttled by the CPU quota."
);
cgroup_family!(
    MEM_USAGE,
    Gauge,
    "container_memory_usage_bytes",
    Bytes,
    "memory.current / memory.usage_in_bytes",
    "Memory charged to the cgroup, page cache included."
);
cgroup_family!(
    MEM_WORKING_SET,
    Gauge,
    "container_memory_working_set_bytes",
    Bytes,
    "usage - inactive_file",
    "Usage minus inactive file pages, floored at 0 (what the OOM killer and kubelet watch)."
);
cgroup_family!(
    MEM_RSS,
    Gauge,
    "container_memory_rss",
    Count,
    "memory.stat anon / total_rss",
    "Anonymous memory of the cgroup, in bytes (cAdvisor's name has no unit suffix)."
);
cgroup_family!(
    MEM_CACHE,
    Gauge,
    "container_memory_cache",
    Count,
    "memory.stat file / total_cache",
    "Page cache charged to the cgroup, in bytes (cAdvisor's name has no unit suffix)."
);
cgroup_family!(
    OOM,
    Counter,
    "container_oom_events",
    Count,
    "memory.events oom_kill / memory.oom_control",
    "Processes of the cgroup killed by the OOM killer."
);
cgroup_family!(
    FS_READS,
    Counter,
    "container_fs_reads_bytes",
    Bytes,
    "io.stat rbytes / blkio.throttle.io_service_bytes",
    "Bytes read from block devices by the cgroup, all devices."
);
cgroup_family!(
    FS_WRITES,
    Counter,
    "container_fs_writes_bytes",
    Bytes,
    "io.stat wbytes / blkio.throttle.io_service_bytes",
    "Bytes written to block devices by the cgroup, all devices."
);
cgroup_family!(
    PSI_CPU_WAITING,
    Counter,
    "container_pressure_cpu_waiting",
    Nanoseconds,
    "cpu.pressure some (v2)",
    "Time at least one task of the cgroup waited for CPU (PSI some)."
);
cgroup_family!(
    PSI_CPU_STALLED,
    Counter,
    "container_pressure_cpu_stalled",
    Nanoseconds,
    "cpu.pressure full (v2)",
    "Time all non-idle tasks of the cgroup waited for CPU (PSI full)."
);
cgroup_family!(
    PSI_MEM_WAITING,
    Counter,
    "container_pressure_memory_waiting",
    Nanoseconds,
    "memory.pressure some (v2)",
    "Time at least one task of the cgroup stalled on memory (PSI some)."
);
cgroup_family!(
    PSI_MEM_STALLED,
    Counter,
    "container_pressure_memory_stalled",
    Nanoseconds,
    "memory.pressure full (v2)",
    "Time all non-idle tasks of the cgroup stalled on memory (PSI full)."
);
cgroup_family!(
    PSI_IO_WAITING,
    Counter,
    "container_pressure_io_waiting",
    Nanoseconds,
    "io.pressure some (v2)",
    "Time at least one task of the cgroup stalled on I/O (PSI some)."
);
cgroup_family!(
    PSI_IO_STALLED,
    Counter,
    "container_pressure_io_stalled",
    Nanoseconds,
    "io.pressure full (v2)",
    "Time all non-idle tasks of the cgroup stalled on I/O (PSI full)."
);
cgroup_family!(
    SPEC_QUOTA,
    Gauge,
    "container_spec_cpu_quota",
    Count,
    "cpu.max / cpu.cfs_quota_us",
    "CPU quota of the cgroup in microseconds per period; 0 without a quota."
);
cgroup_family!(
    SPEC_PERIOD,
    Gauge,
    "container_spec_cpu_period",
    Count,
    "cpu.max / cpu.cfs_period_us",
    "CPU quota period of the cgroup in microseconds."
);
cgroup_family!(
    SPEC_MEMORY,
    Gauge,
    "container_spec_memory_limit_bytes",
    Bytes,
    "memory.max / memory.limit_in_bytes",
    "Memory limit of the cgroup; 0 when unlimited."
);
crate::family! {
    pub(super) static EXPORTED: Gauge {
        name: "sonde_cgroups",
        unit: Count,
        labels: [],
        sampler: super::NAME,
        source: "cgroupfs",
        help: "Cgroups whose series are exported now.",
    }
}
crate::family! {
    pub(super) static PASS: Gauge {
        name: "sonde_cgroup_pass",
        unit: Nanoseconds,
        labels: [],
        sampler: super::NAME,
        source: "agent",
        help: "Wall time of the last pass over cgroupfs (walk, files, BPF slots).",
    }
}
crate::family! {
    pub(super) static DROPPED: Counter {
        name: "sonde_cgroups_dropped",
        unit: Count,
        labels: [],
        sampler: super::NAME,
        source: "cgroupfs",
        help: "Cgroups not exported because max_cgroups were already exported (each counted once).",
    }
}
