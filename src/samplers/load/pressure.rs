//! `pressure`: pressure stall information (PSI) totals from /proc/pressure.

use std::sync::Arc;

use linkme::distributed_slice;

use crate::agent::sampler::{
    options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS,
};
use crate::registry::Series;
use crate::samplers::ProcFile;

crate::family!(STALL: Counter "pressure_stall", Nanoseconds, ["resource", "kind"], "pressure", "/proc/pressure/*",
    "Time tasks stalled waiting for the resource: some = at least one task, full = all non-idle tasks.");

const RESOURCES: [&str; 3] = ["cpu", "io", "memory"];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: "pressure",
    validate: options::<NoOptions>,
    init,
};

struct Pressure {
    files: Vec<(ProcFile, [Arc<Series>; 2])>,
}

fn init(_: &SamplerContext<'_>) -> InitResult {
    let mut files = Vec::new();
    for r in RESOURCES {
        let f = ProcFile::open(format!("/proc/pressure/{r}")).map_err(|e| {
            e.context(
                "PSI is not available (needs CONFIG_PSI=y and no psi=0 on the kernel command line)",
            )
        })?;
        files.push((f, ["some", "full"].map(|k| STALL.series(&[r, k]))));
    }
    let mut s = Pressure { files };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

impl Sampler for Pressure {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for (file, [some, full]) in &mut self.files {
            // `some avg10=0.00 avg60=0.00 avg300=0.00 total=1234` (µs)
            for line in file.read()?.lines() {
                let series = match line.split_once(' ') {
                    Some(("some", _)) => &*some,
                    Some(("full", _)) => &*full,
                    _ => continue,
                };
                if let Some(total) = line
                    .rsplit_once("total=")
                    .and_then(|(_, t)| t.trim().parse::<u64>().ok())
                {
                    series.set_counter(total * 1000);
                }
            }
        }
        Ok(())
    }
}
