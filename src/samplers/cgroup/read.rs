//! Walking the hierarchy, and reading one cgroup's files (v2, or v1 from
//! each controller's hierarchy) into its series.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::parse;
use super::Exported;
use crate::registry::Series;
use crate::samplers::common::cgroups::Mounts;

pub(super) struct Reader<'a> {
    pub mounts: &'a Mounts,
    pub root: &'a Path,
    pub path: &'a str,
    pub buf: &'a mut String,
}

impl Reader<'_> {
    /// The text of `file` of this cgroup in `controller`'s hierarchy
    /// (None: the primary one); None when absent.
    fn read(&mut self, controller: Option<&str>, file: &str) -> Option<&str> {
        use std::io::Read as _;
        let base = match controller {
            Some(c) => self.mounts.controller(c)?,
            None => self.root,
        };
        let mut p = base.to_path_buf();
        p.push(self.path.trim_start_matches('/'));
        p.push(file);
        self.buf.clear();
        std::fs::File::open(&p)
            .ok()?
            .read_to_string(self.buf)
            .ok()?;
        Some(self.buf.as_str())
    }
}

fn set(series: &Series, v: Option<u64>) {
    if let Some(v) = v {
        series.set_counter(v);
    }
}

fn gauge(series: &Series, v: Option<u64>) {
    if let Some(v) = v {
        series.set_gauge(v.min(i64::MAX as u64) as i64);
    }
}

pub(super) fn read_v2(mut r: Reader<'_>, e: &mut Exported) {
    if let Some(t) = r.read(None, "cpu.stat") {
        let us = |k| parse::keyed(t, k).map(|v| v * 1000);
        set(&e.cpu_usage, us("usage_usec"));
        set(&e.cpu_user, us("user_usec"));
        set(&e.cpu_system, us("system_usec"));
        set(&e.cfs_periods, parse::keyed(t, "nr_periods"));
        set(&e.cfs_throttled_periods, parse::keyed(t, "nr_throttled"));
        set(&e.cfs_throttled, us("throttled_usec"));
    }
    let usage = r.read(None, "memory.current").and_then(parse::single);
    gauge(&e.mem_usage, usage);
    if let Some(t) = r.read(None, "memory.stat") {
        gauge(&e.mem_rss, parse::keyed(t, "anon"));
        gauge(&e.mem_cache, parse::keyed(t, "file"));
        if let (Some(u), Some(i)) = (usage, parse::keyed(t, "inactive_file")) {
            gauge(&e.mem_working_set, Some(parse::working_set(u, i)));
        }
    }
    set(
        &e.oom,
        r.read(None, "memory.events")
            .and_then(|t| parse::keyed(t, "oom_kill")),
    );
    if let Some(t) = r.read(None, "io.stat") {
        let (rd, wr) = parse::io_stat(t);
        set(&e.fs_reads, Some(rd));
        set(&e.fs_writes, Some(wr));
    }
    if let Some((q, p)) = r.read(None, "cpu.max").and_then(parse::cpu_max) {
        gauge(&e.quota, Some(q));
        gauge(&e.period, Some(p));
    }
    gauge(
        &e.mem_limit,
        r.read(None, "memory.max").and_then(parse::limit),
    );
    for (series, file, full) in &e.psi {
        if let Some(t) = r.read(None, file) {
            let (some, all) = parse::pressure(t);
            set(series, if *full { all } else { some }.map(|us| us * 1000));
        }
    }
}

pub(super) fn read_v1(mut r: Reader<'_>, e: &mut Exported, tick_ns: u64) {
    set(
        &e.cpu_usage,
        r.read(Some("cpuacct"), "cpuacct.usage")
            .and_then(parse::single),
    );
    if let Some(t) = r.read(Some("cpuacct"), "cpuacct.stat") {
        set(&e.cpu_user, parse::keyed(t, "user").map(|v| v * tick_ns));
        set(
            &e.cpu_system,
            parse::keyed(t, "system").map(|v| v * tick_ns),
        );
    }
    if let Some(t) = r.read(Some("cpu"), "cpu.stat") {
        set(&e.cfs_periods, parse::keyed(t, "nr_periods"));
        set(&e.cfs_throttled_periods, parse::keyed(t, "nr_throttled"));
        set(&e.cfs_throttled, parse::keyed(t, "throttled_time"));
    }
    let quota = r
        .read(Some("cpu"), "cpu.cfs_quota_us")
        .and_then(parse::limit);
    gauge(&e.quota, quota);
    gauge(
        &e.period,
        r.read(Some("cpu"), "cpu.cfs_period_us")
            .and_then(parse::single),
    );
    let usage = r
        .read(Some("memory"), "memory.usage_in_bytes")
        .and_then(parse::single);
    gauge(&e.mem_usage, usage);
    if let Some(t) = r.read(Some("memory"), "memory.stat") {
        gauge(&e.mem_rss, parse::keyed(t, "total_rss"));
        gauge(&e.mem_cache, parse::keyed(t, "total_cache"));
        if let (Some(u), Some(i)) = (usage, parse::keyed(t, "total_inactive_file")) {
            gauge(&e.mem_working_set, Some(parse::working_set(u, i)));
        }
    }
    set(
        &e.oom,
        r.read(Some("memory"), "memory.oom_control")
            .and_then(|t| parse::keyed(t, "oom_kill")),
    );
    gauge(
        &e.mem_limit,
        r.read(Some("memory"), "memory.limit_in_bytes")
            .and_then(parse::limit),
    );
    let blkio = r
        .read(Some("blkio"), "blkio.throttle.io_service_bytes_recursive")
        .map(parse::blkio_bytes)
        .or_else(|| {
            r.read(Some("blkio"), "blkio.throttle.io_service_bytes")
                .map(parse::blkio_bytes)
        });
    if let Some((rd, wr)) = blkio {
        set(&e.fs_reads, Some(rd));
        set(&e.fs_writes, Some(wr));
    }
}

/// Depth-first walk: every cgroup below `dir` (the root is ""), with its
/// id (the directory's inode number).
pub(super) fn walk(
    dir: &Path,
    rel: &str,
    level: usize,
    depth: usize,
    out: &mut Vec<(String, u64)>,
) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    out.push((rel.to_string(), meta.ino()));
    if depth != 0 && level >= depth {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        walk(&e.path(), &format!("{rel}/{name}"), level + 1, depth, out);
    }
}
