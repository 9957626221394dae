//! `pressure`: pressure stall information (PSI) totals from /proc/pressure.

use std::sync::Arc;

use linkme::distributed_slice;

use super::common::ProcFile;
use super::{options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::registry::Series;

/// The sampler's config name: `[samplers.pressure]`, and its families' `sampler`.
pub(crate) const NAME: &str = "pressure";

crate::family! {
    static STALL: Counter {
        name: "pressure_stall",
        unit: Nanoseconds,
        labels: ["resource", "kind"],
        sampler: NAME,
        source: "/proc/pressure/*",
        help: "Time tasks stalled waiting for the resource: some = at least one task, full = all non-idle tasks.",
    }
}

const RESOURCES: [&str; 3] = ["cpu", "io", "memory"];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: false,
    capabilities: 0,
    validate: options::<NoOptions>,
    init,
};

struct Resource {
    name: &'static str,
    file: ProcFile,
    /// `some`, and `full` once the file has it (the cpu file has no `full`
    /// line before Linux 5.13).
    some: Arc<Series>,
    full: Option<Arc<Series>>,
}

struct Pressure {
    resources: Vec<Resource>,
}

fn init(_: &SamplerContext<'_>) -> InitResult {
    let mut resources = Vec::new();
    for r in RESOURCES {
        let file = ProcFile::open(format!("/proc/pressure/{r}")).map_err(|e| {
            e.context(
                "PSI is not available (needs CONFIG_PSI=y and no psi=0 on the kernel command line)",
            )
        })?;
        resources.push(Resource {
            name: r,
            file,
            some: STALL.series(&[r, "some"]),
            full: None,
        });
    }
    let mut s = Pressure { resources };
    s.refresh()?;
    Ok(Some(Box::new(s)))
}

/// The `total=` values (µs) of the `some` and `full` lines of a
/// /proc/pressure file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=1234`.
pub fn parse(text: &str) -> (Option<u64>, Option<u64>) {
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        let slot = match line.split_once(' ') {
            Some(("some", _)) => &mut some,
            Some(("full", _)) => &mut full,
            _ => continue,
        };
        *slot = line
            .rsplit_once("total=")
            .and_then(|(_, t)| t.trim().parse::<u64>().ok());
    }
    (some, full)
}

impl Sampler for Pressure {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for r in &mut self.resources {
            let (some, full) = parse(r.file.read()?);
            if let Some(us) = some {
                r.some.set_counter(us * 1000);
            }
            if let Some(us) = full {
                let name = r.name;
                r.full
                    .get_or_insert_with(|| STALL.series(&[name, "full"]))
                    .set_counter(us * 1000);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_psi_files_with_and_without_full_lines() {
        let io = "some avg10=0.00 avg60=0.12 avg300=0.05 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=789\n";
        assert_eq!(parse(io), (Some(123456), Some(789)));
        // cpu before Linux 5.13: no `full` line.
        let cpu = "some avg10=1.00 avg60=2.00 avg300=3.00 total=42\n";
        assert_eq!(parse(cpu), (Some(42), None));
        assert_eq!(parse(""), (None, None));
        assert_eq!(parse("some avg10=x total=garbage\n"), (None, None));
    }
}
