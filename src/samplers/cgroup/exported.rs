//! One exported cgroup: its labels (from its path, and from Docker when it
//! answers), the series cgroupfs fills (see `read`), and the series each
//! BPF provider's per-cgroup counters fill, by the families the provider
//! carries.

use std::sync::Arc;

use super::families::*;
use super::{docker, names};
use crate::registry::{Family, Series};
use crate::samplers::common::cgroups::Provider;

/// The series of one exported cgroup.
pub(super) struct Exported {
    /// Path from the hierarchy root ("" for the root itself).
    pub(super) path: String,
    /// Label values: id, container_id, name, image, pod, namespace.
    pub(super) labels: [String; 6],
    /// Labels were made before Docker answered: made again when it does.
    pub(super) docker_pending: bool,
    pub(super) id: u64,
    pub(super) slot: Option<usize>,
    pub(super) cpu_usage: Arc<Series>,
    pub(super) cpu_user: Arc<Series>,
    pub(super) cpu_system: Arc<Series>,
    pub(super) cfs_periods: Arc<Series>,
    pub(super) cfs_throttled_periods: Arc<Series>,
    pub(super) cfs_throttled: Arc<Series>,
    pub(super) mem_usage: Arc<Series>,
    pub(super) mem_working_set: Arc<Series>,
    pub(super) mem_rss: Arc<Series>,
    pub(super) mem_cache: Arc<Series>,
    pub(super) oom: Arc<Series>,
    pub(super) fs_reads: Arc<Series>,
    pub(super) fs_writes: Arc<Series>,
    pub(super) quota: Arc<Series>,
    pub(super) period: Arc<Series>,
    pub(super) mem_limit: Arc<Series>,
    /// v2 only: (series, file, the `full` line).
    pub(super) psi: Vec<(Arc<Series>, &'static str, bool)>,
    /// With a slot: what each provider's counters give this cgroup.
    bpf: Vec<Counted>,
}

/// `bpf`'s entry for provider `p`, made on first use.
fn counted<'a>(bpf: &'a mut Vec<Counted>, p: &Provider) -> &'a mut Counted {
    let i = match bpf.iter().position(|c| c.provider == p.id()) {
        Some(i) => i,
        None => {
            bpf.push(Counted {
                provider: p.id(),
                base: vec![0; p.fields().len()],
                series: vec![None; p.fields().len()],
            });
            bpf.len() - 1
        }
    };
    &mut bpf[i]
}

/// What one provider's counters give an exported cgroup.
struct Counted {
    /// Which provider (a restarted sampler registers a new one).
    provider: u64,
    /// The slot's values when this cgroup took it (or the provider
    /// started): a slot's counters are not reset when it passes from a
    /// vanished cgroup to a new one.
    base: Vec<u64>,
    /// One per field, made as the provider says (see `Provider::lazy`).
    series: Vec<Option<Arc<Series>>>,
}

pub(super) fn path_or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Label values of a cgroup (id, container_id, name, image, pod,
/// namespace) and whether Docker may still answer for it.
pub(super) fn labels_of(path: &str, docker: Option<&docker::Docker>) -> ([String; 6], bool) {
    let mut l = names::from_path(path_or_root(path));
    let mut pending = false;
    if let (Some(d), Some(cid)) = (docker, l.container_id.clone()) {
        // Only Docker's own cgroups (or a path that does not say whose
        // container it is) are asked about.
        if matches!(l.runtime, None | Some("docker")) {
            match d.get(&cid) {
                Some(info) => info.apply(&mut l),
                None => pending = true,
            }
        }
    }
    let out = [
        path_or_root(path).to_string(),
        l.container_id.unwrap_or_default(),
        l.name.unwrap_or_default(),
        l.image.unwrap_or_default(),
        l.pod.unwrap_or_default(),
        l.namespace.unwrap_or_default(),
    ];
    (out, pending)
}

impl Exported {
    pub(super) fn new(
        path: String,
        labels: [String; 6],
        docker_pending: bool,
        id: u64,
        slot: Option<usize>,
        v2: bool,
    ) -> Self {
        let values = labels.clone();
        let l: [&str; 6] = std::array::from_fn(|i| values[i].as_str());
        let s = |f: &'static Family| f.series(&l);
        let psi = if v2 {
            vec![
                (s(&PSI_CPU_WAITING), "cpu.pressure", false),
                (s(&PSI_CPU_STALLED), "cpu.pressure", true),
                (s(&PSI_MEM_WAITING), "memory.pressure", false),
                (s(&PSI_MEM_STALLED), "memory.pressure", true),
                (s(&PSI_IO_WAITING), "io.pressure", false),
                (s(&PSI_IO_STALLED), "io.pressure", true),
            ]
        } else {
            Vec::new()
        };
        Exported {
            path,
            docker_pending,
            id,
            slot,
            cpu_usage: s(&CPU_USAGE),
            cpu_user: s(&CPU_USER),
            cpu_system: s(&CPU_SYSTEM),
            cfs_periods: s(&CFS_PERIODS),
            cfs_throttled_periods: s(&CFS_THROTTLED_PERIODS),
            cfs_throttled: s(&CFS_THROTTLED),
            mem_usage: s(&MEM_USAGE),
            mem_working_set: s(&MEM_WORKING_SET),
            mem_rss: s(&MEM_RSS),
            mem_cache: s(&MEM_CACHE),
            oom: s(&OOM),
            fs_reads: s(&FS_READS),
            fs_writes: s(&FS_WRITES),
            quota: s(&SPEC_QUOTA),
            period: s(&SPEC_PERIOD),
            mem_limit: s(&SPEC_MEMORY),
            psi,
            bpf: Vec::new(),
            labels,
        }
    }

    /// Labels made again (Docker answered): the cgroupfs series are new,
    /// the BPF counters keep their base and make their series anew.
    pub(super) fn relabel(&mut self, labels: [String; 6], v2: bool) {
        let mut fresh = Exported::new(self.path.clone(), labels, false, self.id, self.slot, v2);
        fresh.bpf = std::mem::take(&mut self.bpf);
        for c in &mut fresh.bpf {
            c.series.iter_mut().for_each(|s| *s = None);
        }
        *self = fresh;
    }

    /// Takes the current slot values as zero for `providers` (the slot may
    /// carry counts of a previous owner, or of a provider that started
    /// late).
    pub(super) fn rebase(&mut self, providers: &[Arc<Provider>]) {
        let Some(slot) = self.slot else { return };
        for p in providers {
            let c = counted(&mut self.bpf, p);
            p.read(slot, &mut c.base);
        }
    }

    /// Publishes every provider's counters of this cgroup's slot; what a
    /// provider no longer registered gave goes with it.
    pub(super) fn read_bpf(&mut self, providers: &[Arc<Provider>], scratch: &mut Vec<u64>) {
        self.bpf
            .retain(|c| providers.iter().any(|p| p.id() == c.provider));
        let Some(slot) = self.slot else { return };
        let labels = &self.labels;
        for p in providers {
            scratch.resize(p.fields().len(), 0);
            p.read(slot, scratch);
            let c = counted(&mut self.bpf, p);
            for (f, field) in p.fields().iter().enumerate() {
                let v = scratch[f].saturating_sub(c.base[f]);
                if p.lazy && v == 0 && c.series[f].is_none() {
                    continue;
                }
                let series = c.series[f].get_or_insert_with(|| {
                    let mut l: Vec<&str> = labels.iter().map(String::as_str).collect();
                    l.extend(field.label);
                    field.family.series(&l)
                });
                series.set_counter(v);
            }
        }
    }
}
