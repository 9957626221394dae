//! `diskstats`: per-device I/O counters from /proc/diskstats.

use std::collections::HashMap;
use std::sync::Arc;

use linkme::distributed_slice;
use serde::Deserialize;

use crate::agent::sampler::{options, InitResult, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::Series;
use crate::samplers::{glob, ProcFile};

crate::family!(OPS: Counter "disk_operations", Count, ["device", "op"], "diskstats", "/proc/diskstats",
    "Completed I/O requests by operation (read, write, discard, flush).");
crate::family!(BYTES: Counter "disk", Bytes, ["device", "op"], "diskstats", "/proc/diskstats",
    "Bytes transferred by operation (read, write, discard).");
crate::family!(TIME: Counter "disk_time", Nanoseconds, ["device", "op"], "diskstats", "/proc/diskstats",
    "Time spent on requests by operation, summed over requests (overlapping requests add up).");
crate::family!(IO_TIME: Counter "disk_io_time", Nanoseconds, ["device"], "diskstats", "/proc/diskstats",
    "Time the device had at least one request in flight (utilisation = rate of this).");
crate::family!(IN_FLIGHT: Gauge "disk_in_flight", Count, ["device"], "diskstats", "/proc/diskstats",
    "Requests in flight now.");

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
    name: "diskstats",
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

struct Entry {
    /// `None` for devices that are excluded (decided once per device).
    disk: Option<Disk>,
    generation: u64,
}

struct Diskstats {
    file: ProcFile,
    options: Options,
    devices: HashMap<String, Entry>,
    generation: u64,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let mut s = Diskstats {
        file: ProcFile::open("/proc/diskstats")?,
        options: ctx.options()?,
        devices: HashMap::new(),
        generation: 0,
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

impl Sampler for Diskstats {
    fn refresh(&mut self) -> anyhow::Result<()> {
        self.generation += 1;
        let generation = self.generation;
        let text = self.file.read()?;
        for line in text.lines() {
            // major minor name, then up to 17 counters (fewer on old kernels).
            let mut f = line.split_ascii_whitespace();
            let (Some(_), Some(_), Some(dev)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let mut v = [0u64; 17];
            for (slot, field) in v.iter_mut().zip(f) {
                *slot = field.parse().unwrap_or(0);
            }
            if !self.devices.contains_key(dev) {
                let disk = wanted(&self.options, dev).then(|| Disk::new(dev));
                self.devices
                    .insert(dev.to_string(), Entry { disk, generation });
            }
            let entry = self.devices.get_mut(dev).expect("inserted above");
            entry.generation = generation;
            let Some(d) = &entry.disk else { continue };
            // reads: 0 completed, 2 sectors, 3 ms; writes: 4, 6, 7;
            // 8 in flight, 9 io ms; discards: 11, 13, 14; flushes: 15, 16.
            for (i, (ops, time)) in [(0, 3), (4, 7), (11, 14), (15, 16)].into_iter().enumerate() {
                d.ops[i].set_counter(v[ops]);
                d.time[i].set_counter(v[time] * MS);
            }
            for (i, sectors) in [2, 6, 13].into_iter().enumerate() {
                d.bytes[i].set_counter(v[sectors] * SECTOR);
            }
            d.in_flight.set_gauge(v[8] as i64);
            d.io_time.set_counter(v[9] * MS);
        }
        // Devices that went away (unplugged, loop detached) stop reporting.
        self.devices.retain(|_, e| e.generation == generation);
        Ok(())
    }
}
