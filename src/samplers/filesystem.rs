//! `filesystem`: size, free space and inodes of each real mount.
//!
//! statvfs on a hung NFS mount blocks forever, so it never runs on the scrape
//! path: a background thread starts one short-lived thread per mount each
//! interval and the scrape reads whatever the last statvfs stored. A mount
//! whose statvfs has not returned is not asked again (no thread pile-up) and
//! reports `filesystem_stalled 1` until it answers.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use linkme::distributed_slice;
use serde::Deserialize;

use super::common::{self, glob, Keyed};
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::config::HumanDuration;
use crate::privileges;
use crate::registry::Series;

/// The sampler's config name: `[samplers.filesystem]`, and its families' `sampler`.
pub(crate) const NAME: &str = "filesystem";

crate::family! {
    static SIZE: Gauge {
        name: "filesystem_size_bytes",
        unit: Bytes,
        labels: ["device", "mountpoint", "fstype"],
        sampler: NAME,
        source: "statvfs",
        help: "Size of the filesystem.",
    }
}
crate::family! {
    static FREE: Gauge {
        name: "filesystem_free_bytes",
        unit: Bytes,
        labels: ["device", "mountpoint", "fstype"],
        sampler: NAME,
        source: "statvfs",
        help: "Free space, including blocks reserved for root.",
    }
}
crate::family! {
    static AVAIL: Gauge {
        name: "filesystem_avail_bytes",
        unit: Bytes,
        labels: ["device", "mountpoint", "fstype"],
        sampler: NAME,
        source: "statvfs",
        help: "Space available to unprivileged users.",
    }
}
crate::family! {
    static FILES: Gauge {
        name: "filesystem_files",
        unit: Count,
        labels: ["device", "mountpoint", "fstype"],
        sampler: NAME,
        source: "statvfs",
        help: "Inodes of the filesystem.",
    }
}
crate::family! {
    static FILES_FREE: Gauge {
        name: "filesystem_files_free",
        unit: Count,
        labels: ["device", "mountpoint", "fstype"],
        sampler: NAME,
        source: "statvfs",
        help: "Free inodes.",
    }
}
crate::family! {
    static STALLED: Gauge {
        name: "filesystem_stalled",
        unit: Count,
        labels: ["device", "mountpoint", "fstype"],
        sampler: NAME,
        source: "statvfs",
        help: "1 while the last statvfs of the mount has not returned (hung network filesystem); its other values are stale.",
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// How often statvfs runs for every mount.
    interval: HumanDuration,
    /// Filesystem types that are not real storage.
    exclude_fstypes: Vec<String>,
    /// Mount point globs to leave out.
    exclude_mountpoints: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interval: HumanDuration(Duration::from_secs(10)),
            exclude_fstypes: [
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "efivarfs",
                "fusectl",
                "hugetlbfs",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "pstore",
                "ramfs",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "sysfs",
                "tmpfs",
                "tracefs",
                "fuse.lxcfs",
                "fuse.portal",
                "erofs",
                "iso9660",
            ]
            .map(String::from)
            .to_vec(),
            exclude_mountpoints: Vec::new(),
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: false,
    // statvfs of mount points below directories only their owner may
    // search (/run/user/UID/..., /root/...).
    capabilities: privileges::bit(privileges::CAP_DAC_READ_SEARCH),
    validate: options::<Options>,
    init,
};

/// How long startup waits for the first statvfs round, so `--once` and the
/// first scrape have values; a hung mount only costs this once.
const FIRST_ROUND_WAIT: Duration = Duration::from_secs(1);

struct Mount {
    busy: AtomicBool,
    size: Arc<Series>,
    free: Arc<Series>,
    avail: Arc<Series>,
    files: Arc<Series>,
    files_free: Arc<Series>,
    stalled: Arc<Series>,
}

impl Mount {
    // fsblkcnt_t and friends are not u64 on every target.
    #[allow(clippy::unnecessary_cast)]
    fn store(&self, st: &libc::statvfs) {
        let frsize = st.f_frsize as u64;
        self.size.set_gauge((st.f_blocks as u64 * frsize) as i64);
        self.free.set_gauge((st.f_bfree as u64 * frsize) as i64);
        self.avail.set_gauge((st.f_bavail as u64 * frsize) as i64);
        self.files.set_gauge(st.f_files as i64);
        self.files_free.set_gauge(st.f_ffree as i64);
    }
}

struct Worker {
    options: Options,
    mounts: Keyed<Arc<Mount>>,
    /// The mounts asked this round (for the first round's wait).
    in_flight: Vec<Arc<Mount>>,
}

struct Filesystem {
    worker: common::Worker,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let options: Options = ctx.options()?;
    let mut worker = Worker {
        options,
        mounts: Keyed::default(),
        in_flight: Vec::new(),
    };
    worker.round()?;
    let deadline = Instant::now() + FIRST_ROUND_WAIT;
    while worker.busy() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let interval = worker.options.interval.0;
    let pass = move |w: &mut Worker| {
        if let Err(e) = w.round() {
            tracing::warn!(error = %e, "filesystem: cannot list mounts");
        }
        interval
    };
    let worker = common::Worker::spawn("sonde-fs", interval, move || worker, pass)?;
    Ok(Some(Box::new(Filesystem { worker })))
}

impl Sampler for Filesystem {
    fn refresh(&mut self) -> anyhow::Result<()> {
        // Values are stored by the worker; only report if it died.
        self.worker.check()
    }
}

impl Worker {
    /// Whether a statvfs of this round is still running.
    fn busy(&self) -> bool {
        self.in_flight
            .iter()
            .any(|m| m.busy.load(Ordering::Acquire))
    }

    fn round(&mut self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mut devices = std::collections::HashSet::new();
        self.mounts.begin();
        self.in_flight.clear();
        for m in text.lines().filter_map(parse_mountinfo) {
            if self.options.exclude_fstypes.iter().any(|t| *t == m.fstype)
                || self.options.exclude_mountpoints.iter().any(|p| glob(p, &m.mountpoint))
                // Bind mounts and btrfs subvolumes repeat a device: count it once.
                || !devices.insert(m.dev_id.to_string())
            {
                continue;
            }
            let make = || {
                let l = [m.source.as_str(), m.mountpoint.as_str(), m.fstype];
                Some(Arc::new(Mount {
                    busy: AtomicBool::new(false),
                    size: SIZE.series(&l),
                    free: FREE.series(&l),
                    avail: AVAIL.series(&l),
                    files: FILES.series(&l),
                    files_free: FILES_FREE.series(&l),
                    stalled: STALLED.series(&l),
                }))
            };
            let Some(mount) = self.mounts.get(&m.mountpoint, make) else {
                continue;
            };
            if mount.busy.swap(true, Ordering::AcqRel) {
                mount.stalled.set_gauge(1);
                continue;
            }
            let mount = Arc::clone(mount);
            self.in_flight.push(Arc::clone(&mount));
            let path = m.mountpoint;
            let spawned = std::thread::Builder::new()
                .name("sonde-statvfs".into())
                .spawn({
                    let mount = Arc::clone(&mount);
                    move || {
                        if let Some(st) = statvfs(&path) {
                            mount.store(&st);
                        }
                        mount.stalled.set_gauge(0);
                        mount.busy.store(false, Ordering::Release);
                    }
                });
            if spawned.is_err() {
                mount.busy.store(false, Ordering::Release);
            }
        }
        self.mounts.finish();
        Ok(())
    }
}

fn statvfs(path: &str) -> Option<libc::statvfs> {
    let c = CString::new(path).ok()?;
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then_some(st)
    }
}

struct MountLine<'a> {
    dev_id: &'a str,
    mountpoint: String,
    fstype: &'a str,
    source: String,
}

/// `36 35 98:0 /root /mnt rw,noatime master:1 - ext4 /dev/sda1 rw`
fn parse_mountinfo(line: &str) -> Option<MountLine<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let dev_id = l.nth(2)?;
    let mountpoint = unescape(l.nth(1)?);
    let mut r = right.split(' ');
    let fstype = r.next()?;
    let source = unescape(r.next()?);
    Some(MountLine {
        dev_id,
        mountpoint,
        fstype,
        source,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let m = parse_mountinfo(
            r"36 35 98:0 / /mnt/my\040disk rw,noatime master:1 - ext4 /dev/sda1 rw",
        )
        .unwrap();
        assert_eq!(m.dev_id, "98:0");
        assert_eq!(m.mountpoint, "/mnt/my disk");
        assert_eq!(m.fstype, "ext4");
        assert_eq!(m.source, "/dev/sda1");
        assert!(parse_mountinfo("garbage").is_none());
    }
}
