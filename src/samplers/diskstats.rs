//! `diskstats`: per-device I/O counters from /proc/diskstats.

use std::sync::Arc;

use linkme::distributed_slice;
use serde::Deserialize;

use super::common::{glob, Keyed, ProcFile};
use super::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::Series;

/// The sampler's config name: `[samplers.diskstats]`, and its families' `sampler`.
pub(crate) const NAME: &str = "diskstats";

crate::family! {
    static OPS: Counter {
        name: "disk_operations",
        unit: Count,
        labels: ["device", "op"],
        sampler: NAME,
        source: "/proc/diskstats",
        help: "Completed I/O requests by operation (read, write, discard, flush).",
    }
}
crate::family! {
    static BYTES: Counter {
        name: "disk_bytes",
        unit: Bytes,
        labels: ["device", "op"],
        sampler: NAME,
        source: "/proc/diskstats",
        help: "Bytes transferred by operation (read, write, discard).",
    }
}
crate::family! {
    static TIME: Counter {
        name: "disk_time",
        unit: Nanoseconds,
        labels: ["device", "op"],
        sampler: NAME,
        source: "/proc/diskstats",
        help: "Time spent on requests by operation, summed over requests (overlapping requests add up).",
    }
}
crate::family! {
    static IO_TIME: Counter {
        name: "disk_io_time",
        unit: Nanoseconds,
        labels: ["device"],
        sampler: NAME,
        source: "/proc/diskstats",
        help: "Time the device had at least one request in flight (utilisation = rate of this).",
    }
}
crate::family! {
    static IN_FLIGHT: Gauge {
        name: "disk_in_flight",
        unit: Count,
        labels: ["device"],
        sampler: NAME,
        source: "/proc/diskstats",
        help: "Requests in flight now.",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Options {
    /// Also report partitions (sda1), not only whole devices.
    include_partitions: bool,
    /// Device name globs to leave out.
    exclude: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            include_partitions: false,
            exclude: vec!["loop*".into(), "ram*".into()],
        }
    }
}

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: false,
    capabilities: 0,
    validate: options::<Options>,
    init,
};

struct Disk {
    ops: [Arc<Series>; 4],
    bytes: [Arc<Series>; 3],
    time: [Arc<Series>; 4],
    io_time: Arc<Series>,
    in_flight: Arc<Series>,
}

impl Disk {
    fn new(dev: &str) -> Self {
        let ops = ["read", "write", "discard", "flush"];
        Disk {
            ops: ops.map(|op| OPS.series(&[dev, op])),
            bytes: ["read", "write", "discard"].map(|op| BYTES.series(&[dev, op])),
            time: ops.map(|op| TIME.series(&[dev, op])),
            io_time: IO_TIME.series(&[dev]),
            in_flight: IN_FLIGHT.series(&[dev]),
        }
    }
}

struct Diskstats {
    file: ProcFile,
    options: Options,
    devices: Keyed<Disk>,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let mut s = Diskstats {
        file: ProcFile::open("/proc/diskstats")?,
        options: ctx.options()?,
        devices: Keyed::default(),
    };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

/// Decided once per device, when it first appears.
fn wanted(options: &Options, dev: &str) -> bool {
    if options.exclude.iter().any(|p| glob(p, dev)) {
        return false;
    }
    // sysfs spells `/` in device names as `!` (cciss!c0d0).
    let sys = format!("/sys/class/block/{}/partition", dev.replace('/', "!"));
    options.include_partitions || !std::path::Path::new(&sys).exists()
}

const SECTOR: u64 = 512;
const MS: u64 = 1_000_000;

/// One line of /proc/diskstats: the device name and its counters (up to
/// 17; kernels before 4.18 print 11, before 5.5 print 15, missing ones
/// read as 0).
pub fn parse_line(line: &str) -> Option<(&str, [u64; 17])> {
    let mut f = line.split_ascii_whitespace();
    let (Some(_major), Some(_minor), Some(dev)) = (f.next(), f.next(), f.next()) else {
        return None;
    };
    let mut v = [0u64; 17];
    for (slot, field) in v.iter_mut().zip(f) {
        *slot = field.parse().unwrap_or(0);
    }
    Some((dev, v))
}

impl Disk {
    /// reads: 0 completed, 2 sectors, 3 ms; writes: 4, 6, 7; 8 in flight,
    /// 9 io ms; discards: 11, 13, 14; flushes: 15, 16.
    fn store(&self, v: &[u64; 17]) {
        for (i, (ops, time)) in [(0, 3), (4, 7), (11, 14), (15, 16)].into_iter().enumerate() {
            self.ops[i].set_counter(v[ops]);
            self.time[i].set_counter(v[time] * MS);
        }
        for (i, sectors) in [2, 6, 13].into_iter().enumerate() {
            self.bytes[i].set_counter(v[sectors] * SECTOR);
        }
        self.in_flight.set_gauge(v[8] as i64);
        self.io_time.set_counter(v[9] * MS);
    }
}

impl Sampler for Diskstats {
    fn refresh(&mut self) -> anyhow::Result<()> {
        let text = self.file.read()?;
        self.devices.begin();
        for (dev, v) in text.lines().filter_map(parse_line) {
            let options = &self.options;
            if let Some(d) = self
                .devices
                .get(dev, || wanted(options, dev).then(|| Disk::new(dev)))
            {
                d.store(&v);
            }
        }
        // Devices that went away (unplugged, loop detached) stop reporting.
        self.devices.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn parses_every_kernel_generation_of_diskstats() {
        // 5.5+: 17 counters.
        let (dev, v) = parse_line(
            " 254       0 vda 1000 10 20000 300 2000 20 40000 600 1 900 950 5 0 80 7 11 12",
        )
        .unwrap();
        assert_eq!(dev, "vda");
        assert_eq!((v[0], v[2], v[4], v[8], v[9]), (1000, 20000, 2000, 1, 900));
        assert_eq!((v[11], v[13], v[15], v[16]), (5, 80, 11, 12));
        // 4.18 .. 5.4: 15 counters (no flushes).
        let (_, v) = parse_line("   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15").unwrap();
        assert_eq!((v[14], v[15], v[16]), (15, 0, 0));
        // Before 4.18: 11 counters (no discards).
        let (dev, v) = parse_line("   8       1 cciss/c0d0 1 2 3 4 5 6 7 8 9 10 11").unwrap();
        assert_eq!(dev, "cciss/c0d0");
        assert_eq!((v[10], v[11], v[13]), (11, 0, 0));
        // Garbage lines are skipped, odd fields read as 0.
        assert!(parse_line("").is_none());
        assert!(parse_line("8 0").is_none());
        assert_eq!(parse_line("8 0 sdz x 5").unwrap().1[..2], [0, 5]);
    }
}
