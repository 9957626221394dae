//! cgroups: which layout this host mounts (v2, v1 hybrid, v1), and the
//! per-cgroup BPF counters that the scheduler and syscall programs keep
//! for the cgroups the `cgroup` sampler exports.
//!
//! The BPF side knows a cgroup by its kernfs id, which is the inode number
//! of its directory (bpf/include/cgroup.h), so the cgroup sampler maps ids
//! to paths with stat() as it walks the hierarchy. It gives each exported
//! cgroup a slot and writes `id -> slot` into every provider's hash; the
//! programs count into per-CPU banks indexed by slot (no per-event hash
//! update, bounded by the slot count).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use libbpf_rs::{MapCore as _, MapFlags, MapHandle};

use crate::bpf::{Banks, BanksRef, Bpf, MapRef};
use crate::registry::Family;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Pure cgroup v2: one hierarchy with the controllers.
    V2,
    /// v1 controllers, plus a cgroup2 mount (systemd's "hybrid").
    Hybrid,
    /// v1 controllers only.
    V1,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::V2 => "v2",
            Layout::Hybrid => "v1 hybrid",
            Layout::V1 => "v1",
        }
    }
}

/// Where the cgroup filesystems are mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounts {
    pub layout: Layout,
    /// The cgroup2 mount, if any.
    pub unified: Option<PathBuf>,
    /// v1 controller name -> its hierarchy's mount point.
    pub controllers: Vec<(String, PathBuf)>,
}

impl Mounts {
    /// The mount of a v1 controller (`cpu`, `cpuacct`, `memory`, `blkio`).
    pub fn controller(&self, name: &str) -> Option<&Path> {
        self.controllers
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, p)| p.as_path())
    }

    /// The hierarchy whose cgroups the sampler walks and whose ids the BPF
    /// programs report: the unified one on v2, the cpu controller's on v1.
    pub fn primary(&self) -> Option<&Path> {
        match self.layout {
            Layout::V2 => self.unified.as_deref(),
            _ => self
                .controller("cpu")
                .or_else(|| self.controller("cpuacct")),
        }
    }

    pub fn detect() -> anyhow::Result<Mounts> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        parse_mounts(&text).ok_or_else(|| anyhow::anyhow!("no cgroup filesystem is mounted"))
    }
}

/// The cgroup mounts of a mountinfo text: a cgroup2 mount beside v1
/// controller hierarchies is hybrid (the controllers are v1's, cgroup2 only
/// tracks membership); v2 is when no v1 controller hierarchy is mounted.
pub fn parse_mounts(mountinfo: &str) -> Option<Mounts> {
    let mut unified = None;
    let mut controllers = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or("");
        let _source = r.next();
        let options = r.next().unwrap_or("");
        let mountpoint = PathBuf::from(mountpoint.replace("\\040", " "));
        match fstype {
            "cgroup2" if unified.is_none() => unified = Some(mountpoint),
            "cgroup" => {
                for opt in options.split(',') {
                    if matches!(
                        opt,
                        "cpu" | "cpuacct" | "memory" | "blkio" | "pids" | "cpuset" | "io"
                    ) && !controllers.iter().any(|(c, _)| c == opt)
                    {
                        controllers.push((opt.to_string(), mountpoint.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    let layout = match (&unified, controllers.is_empty()) {
        (None, true) => return None,
        (Some(_), true) => Layout::V2,
        (Some(_), false) => Layout::Hybrid,
        (None, false) => Layout::V1,
    };
    Some(Mounts {
        layout,
        unified,
        controllers,
    })
}

/// How the BPF programs name a task's cgroup (the loader's rodata).
#[derive(Clone, Copy, Debug)]
pub struct BpfTarget {
    /// The task's default-hierarchy (v2) cgroup.
    pub dfl: bool,
    /// On v1: index of the cpu controller in `css_set.subsys`.
    pub subsys: u32,
}

/// How a BPF sampler started with `ctx` names cgroups, when the cgroup
/// sampler's attribution is on and can start; otherwise `None` (logged:
/// the host-wide counters run on, and the cgroup sampler reports why).
pub fn target(ctx: &crate::samplers::SamplerContext<'_>) -> Option<BpfTarget> {
    if !ctx.cgroup_attribution {
        return None;
    }
    bpf_target()
        .map_err(|e| tracing::warn!(error = %e, "{}: no per-cgroup counters", ctx.name))
        .ok()
}

/// What the BPF samplers set when cgroup attribution is on, from the
/// mounted layout and the running kernel's `enum cgroup_subsys_id`.
fn bpf_target() -> anyhow::Result<BpfTarget> {
    let mounts = Mounts::detect()?;
    if mounts.layout == Layout::V2 {
        return Ok(BpfTarget {
            dfl: true,
            subsys: 0,
        });
    }
    // The cgroup sampler walks the cpu controller's hierarchy on v1: the
    // ids must be its ids.
    anyhow::ensure!(
        mounts.controller("cpu").is_some(),
        "the v1 cpu controller is not mounted"
    );
    let subsys = crate::bpf::enum_value("cpu_cgrp_id").ok_or_else(|| {
        anyhow::anyhow!("the kernel's BTF has no cpu_cgrp_id (no cpu controller)")
    })?;
    let subsys = u32::try_from(subsys)?;
    // bpf/include/cgroup.h masks the index with CGROUP_SUBSYS_BOUND - 1.
    anyhow::ensure!(
        subsys < 16,
        "cpu_cgrp_id {subsys} is out of the programs' bound"
    );
    Ok(BpfTarget { dfl: false, subsys })
}

/// Slots each provider has (the maps' size, bpf/scheduler.h).
pub const SLOTS: usize = crate::bpf::consts::scheduler::SCHED_CGROUPS;

/// The labels every per-cgroup family starts with (cAdvisor's), in the
/// order the cgroup sampler gives their values.
pub const LABELS: [&str; 6] = ["id", "container_id", "name", "image", "pod", "namespace"];

/// What a provider publishes for one of its per-cgroup counters: a series
/// of `family`, labelled with the cgroup's [`LABELS`] and, when the family
/// has one more label, `label` as its value.
#[derive(Clone, Copy)]
pub struct Field {
    pub family: &'static Family,
    pub label: Option<&'static str>,
}

/// A BPF sampler's per-cgroup counters: `banks` holds, per CPU, `SLOTS`
/// groups of one counter per field, and the provider says which family
/// each field is published as.
pub struct Provider {
    pub sampler: &'static str,
    /// Unique per provider: a restarted sampler's is a new one.
    id: u64,
    ids: MapHandle,
    banks: Banks,
    fields: Vec<Field>,
    /// A field's series is made once it first counts (most syscall classes
    /// stay 0 in most cgroups); otherwise every field's at the first read
    /// after the cgroup has its slot (a 0 then says "ran nothing").
    pub lazy: bool,
    generation: Option<Generation>,
    /// The generation last written.
    generation_value: AtomicU64,
}

/// Where a provider whose programs cache slots per CPU keeps the slot
/// generation they compare their cache with.
pub struct Generation {
    pub map: MapHandle,
    pub index: u32,
    /// The cache also remembers tasks without a slot (stale when slots are
    /// given, not only when they are taken back).
    pub caches_misses: bool,
}

impl Provider {
    pub fn assign(&self, id: u64, slot: usize) -> anyhow::Result<()> {
        self.ids.update(
            &id.to_ne_bytes(),
            &(slot as u32).to_ne_bytes(),
            MapFlags::ANY,
        )?;
        Ok(())
    }

    pub fn release(&self, id: u64) {
        // Absent already is fine: a failed assign never wrote it.
        let _ = self.ids.delete(&id.to_ne_bytes());
    }

    /// Tells the programs what changed in the slot table (see
    /// `Generation::caches_misses`).
    pub fn changed(&self, given: bool, taken: bool) {
        let Some(gen) = &self.generation else { return };
        if taken || (given && gen.caches_misses) {
            // Through the syscall, not our read-only mapping of the array.
            let g = self.generation_value.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = gen
                .map
                .update(&gen.index.to_ne_bytes(), &g.to_ne_bytes(), MapFlags::ANY);
        }
    }

    /// `out[f]` = field `f` of `slot`, summed over CPUs.
    pub fn read(&self, slot: usize, out: &mut [u64]) {
        out.iter_mut().for_each(|v| *v = 0);
        let n = self.fields.len();
        let width = SLOTS * n;
        for cpu in 0..self.banks.cpus() {
            for (f, v) in out.iter_mut().enumerate().take(n) {
                *v += self.banks.get(cpu, (slot * n + f).min(width - 1));
            }
        }
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn id(&self) -> u64 {
        self.id
    }
}

/// Where a BPF sampler keeps its per-cgroup state, and what it publishes.
pub struct ProviderSpec {
    /// The `id -> slot` hash.
    pub ids: MapRef,
    /// The per-CPU banks of one counter per field per slot.
    pub banks: BanksRef,
    /// The per-CPU counters array holding the slot generation at
    /// `generation` in CPU 0's bank.
    pub counters: MapRef,
    pub generation: usize,
    /// See `Generation::caches_misses`.
    pub caches_misses: bool,
    pub fields: Vec<Field>,
    /// See [`Provider::lazy`].
    pub lazy: bool,
}

impl Provider {
    /// The provider of a loaded BPF sampler.
    pub fn from_bpf<S: libbpf_rs::skel::Skel<'static>>(
        sampler: &'static str,
        bpf: &Bpf<S>,
        spec: ProviderSpec,
    ) -> anyhow::Result<Provider> {
        for f in &spec.fields {
            let labels = f.family.desc.labels;
            anyhow::ensure!(
                labels.len() == LABELS.len() + f.label.is_some() as usize
                    && labels[..LABELS.len()] == LABELS,
                "{}: a per-cgroup family must have the labels {LABELS:?} and at most one more",
                f.family.desc.name
            );
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Provider {
            sampler,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ids: bpf.map(spec.ids)?,
            banks: bpf.banks(spec.banks)?,
            fields: spec.fields,
            lazy: spec.lazy,
            generation: Some(Generation {
                map: bpf.map(spec.counters)?,
                index: spec.generation as u32,
                caches_misses: spec.caches_misses,
            }),
            generation_value: AtomicU64::new(0),
        })
    }
}

static PROVIDERS: Mutex<Vec<Arc<Provider>>> = Mutex::new(Vec::new());

/// A provider registered by a started BPF sampler, which keeps this as
/// long as it runs: dropping it (with the sampler) takes the provider out,
/// and its per-cgroup series go at the cgroup sampler's next pass.
pub struct Registration(Arc<Provider>);

impl Drop for Registration {
    fn drop(&mut self) {
        lock().retain(|p| !Arc::ptr_eq(p, &self.0));
    }
}

/// Called by a BPF sampler that loaded its programs with attribution on.
pub fn register(p: Provider) -> Registration {
    let p = Arc::new(p);
    lock().push(Arc::clone(&p));
    Registration(p)
}

/// The registered providers (the cgroup sampler asks every pass: samplers
/// start and stop in any order).
pub fn providers() -> Vec<Arc<Provider>> {
    lock().clone()
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Arc<Provider>>> {
    PROVIDERS.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 30 0:22 / /sys ro,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 31 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
36 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
37 31 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
38 31 0:33 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
";
    const V2: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn hybrid_and_v2_layouts_are_told_apart() {
        let m = parse_mounts(HYBRID).unwrap();
        assert_eq!(m.layout, Layout::Hybrid);
        assert_eq!(m.primary(), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(
            m.controller("memory"),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(m.controller("pids"), None);
        let m = parse_mounts(V2).unwrap();
        assert_eq!(m.layout, Layout::V2);
        assert_eq!(m.primary(), Some(Path::new("/sys/fs/cgroup")));
        assert!(parse_mounts("").is_none());
    }
}
