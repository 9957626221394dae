//! Loading one BPF object: every map declared once, by name, with the
//! per-CPU shape the loader sizes it to; `tp_btf` tried before its `raw_tp`
//! twins; each program attached on its own; a typed handle per declared
//! map to read it by after the load.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use anyhow::Context as _;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore as _, MapHandle, Object, OpenObject};

use super::btf::{kernel_has_tracepoint, kernel_release};
use super::consts::sonde::HISTOGRAM_BUCKETS;
use super::report::{BpfContext, BpfInfo};
use super::{Banks, Histograms, HookMode, ProgramInfo};

/// How a declared map is laid out; arrays are sized per CPU before load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Per-CPU banks of this many u64 counters.
    Banks(usize),
    /// This many H2 histograms per CPU.
    Histograms(usize),
    /// Any other map (hash, ring buffer): not sized, not mmap'd.
    Other,
}

impl Shape {
    fn per_cpu(self) -> Option<usize> {
        match self {
            Shape::Banks(width) => Some(width),
            Shape::Histograms(count) => Some(count * HISTOGRAM_BUCKETS),
            Shape::Other => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Declared {
    name: &'static str,
    shape: Shape,
}

/// A declared map of per-CPU banks; [`Bpf::banks`] maps it.
#[derive(Clone, Copy, Debug)]
pub struct BanksRef(usize);

/// A declared map of per-CPU histograms; [`Bpf::histograms`] maps it.
#[derive(Clone, Copy, Debug)]
pub struct HistogramsRef(usize);

/// Any declared map; [`Bpf::map`] gives an owned handle on it.
#[derive(Clone, Copy, Debug)]
pub struct MapRef(usize);

impl From<BanksRef> for MapRef {
    fn from(r: BanksRef) -> MapRef {
        MapRef(r.0)
    }
}

impl From<HistogramsRef> for MapRef {
    fn from(r: HistogramsRef) -> MapRef {
        MapRef(r.0)
    }
}

/// A loaded and attached skeleton.
pub struct Bpf<S> {
    pub skel: S,
    /// Each attached program's link, by its base name.
    links: Vec<(String, Link)>,
    /// Every program as `/samplers` shows it (the report has them too).
    programs: Vec<ProgramInfo>,
    pub cpus: usize,
    maps: Vec<Declared>,
}

// SAFETY: the skeleton holds raw libbpf pointers, which libbpf does not tie
// to a thread; a sampler is only ever used by one thread at a time (it sits
// behind the agent's mutex).
unsafe impl<S> Send for Bpf<S> {}

/// Splits `sys_enter_btf` into (`sys_enter`, Some(TpBtf)).
fn variant(name: &str) -> (&str, Option<HookMode>) {
    if let Some(base) = name.strip_suffix("_btf") {
        (base, Some(HookMode::TpBtf))
    } else if let Some(base) = name.strip_suffix("_raw") {
        (base, Some(HookMode::RawTp))
    } else {
        (name, None)
    }
}

/// Routes libbpf's own messages (verifier logs included) into our log.
fn init_libbpf_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        libbpf_rs::set_print(Some((
            libbpf_rs::PrintLevel::Debug,
            |level, msg| match level {
                libbpf_rs::PrintLevel::Warn => {
                    tracing::debug!(target: "libbpf", "{}", msg.trim_end())
                }
                _ => tracing::trace!(target: "libbpf", "{}", msg.trim_end()),
            },
        )));
    });
}

/// Declares a sampler's BPF object (each map once, arrays with their
/// per-CPU shape), then opens, sizes, loads and attaches it.
///
/// Loading tries `tp_btf` then the `raw_tp` twins (per the `hook` option)
/// and fails only when nothing could be loaded; a program that will not
/// attach is reported and the rest keep working.
pub struct Loader<'a, B> {
    ctx: &'a BpfContext,
    builder: fn() -> B,
    unused: Vec<&'static str>,
    maps: Vec<Declared>,
}

impl<'a, B> Loader<'a, B>
where
    B: SkelBuilder<'static>,
{
    pub(super) fn new(ctx: &'a BpfContext, builder: fn() -> B) -> Self {
        Loader {
            ctx,
            builder,
            unused: Vec::new(),
            maps: Vec::new(),
        }
    }

    /// Hooks the sampler's own options leave out: not loaded, not reported.
    pub fn unused(&mut self, hooks: &[&'static str]) -> &mut Self {
        self.unused.extend_from_slice(hooks);
        self
    }

    fn declare(&mut self, name: &'static str, shape: Shape) -> usize {
        assert!(
            !self.maps.iter().any(|m| m.name == name),
            "BPF map `{name}` declared twice"
        );
        self.maps.push(Declared { name, shape });
        self.maps.len() - 1
    }

    /// An array of per-CPU banks of `width` u64 counters.
    pub fn banks(&mut self, map: &'static str, width: usize) -> BanksRef {
        BanksRef(self.declare(map, Shape::Banks(width)))
    }

    /// An array of `count` H2 histograms per CPU.
    pub fn histograms(&mut self, map: &'static str, count: usize) -> HistogramsRef {
        HistogramsRef(self.declare(map, Shape::Histograms(count)))
    }

    /// Any other map the sampler reads or writes (a hash, a ring buffer).
    pub fn map(&mut self, map: &'static str) -> MapRef {
        MapRef(self.declare(map, Shape::Other))
    }

    pub fn load<S>(self) -> anyhow::Result<Bpf<S>>
    where
        B::Output: OpenSkel<'static, Output = S>,
        S: Skel<'static>,
    {
        self.load_with(|_| Ok(()), |_| Ok(()))
    }

    /// Loads with `configure` run on the open skeleton (to set its
    /// read-only data, which the verifier then prunes by) and `after_load`
    /// before attaching (to fill lookup tables the programs read).
    pub fn load_with<S>(
        self,
        configure: impl Fn(&mut B::Output) -> anyhow::Result<()>,
        after_load: impl Fn(&Loaded<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Bpf<S>>
    where
        B::Output: OpenSkel<'static, Output = S>,
        S: Skel<'static>,
    {
        init_libbpf_logging();
        let cpus = libbpf_rs::num_possible_cpus().context("cannot count possible CPUs")?;
        let modes: &[HookMode] = match self.ctx.options.hook {
            HookMode::Auto => &[HookMode::TpBtf, HookMode::RawTp],
            HookMode::TpBtf => &[HookMode::TpBtf],
            HookMode::RawTp => &[HookMode::RawTp],
        };
        let mut errors = Vec::new();
        for &mode in modes {
            // The open object must outlive the skeleton, which lives as long
            // as the agent: leak its small storage rather than self-reference.
            let storage: &'static mut MaybeUninit<OpenObject> =
                Box::leak(Box::new(MaybeUninit::uninit()));
            let mut open = (self.builder)()
                .open(storage)
                .context("cannot open the BPF object")?;
            let absent = self.configure(open.open_object_mut(), mode, cpus)?;
            configure(&mut open)?;
            match open.load() {
                Ok(skel) => {
                    let loaded = Loaded {
                        obj: skel.object(),
                        maps: &self.maps,
                    };
                    if let Err(e) = after_load(&loaded) {
                        errors.push(format!("{mode:?}: {e:#}"));
                        continue;
                    }
                    return Ok(self.attach(skel, &absent, cpus));
                }
                Err(e) => {
                    let sampler = self.ctx.sampler;
                    tracing::debug!(sampler, ?mode, error = %e, "BPF load failed");
                    errors.push(format!("{} load failed: {e}", mode.as_str()));
                }
            }
        }
        anyhow::bail!("{}", errors.join("; "))
    }

    /// Chooses the programs to load and sizes the declared arrays; returns
    /// the programs left out because their tracepoint is not in this
    /// kernel, with the tracepoint's name.
    fn configure(
        &self,
        obj: &mut OpenObject,
        mode: HookMode,
        cpus: usize,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let sampler = self.ctx.sampler;
        let disable = &self.ctx.options.disable;
        // A hook name that is not one of ours is a typo or a hook an
        // upgrade removed: say so rather than silently attach it.
        let mut hooks: Vec<String> = obj
            .progs()
            .filter(|p| p.section().to_string_lossy() != "syscall")
            .map(|p| variant(&p.name().to_string_lossy()).0.to_string())
            .collect();
        hooks.sort();
        hooks.dedup();
        if let Some(bad) = disable.iter().find(|d| !hooks.contains(d)) {
            anyhow::bail!(
                "[samplers.{sampler}] disable: unknown hook `{bad}`; its hooks are {}",
                hooks.join(", ")
            );
        }
        let mut absent = Vec::new();
        for mut prog in obj.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            let (base, v) = variant(&name);
            let mut wanted = v.is_none_or(|v| v == mode)
                && !disable.iter().any(|d| d == base)
                && !self.unused.contains(&base);
            // A hook an older kernel lacks (e.g. sock_send_length before
            // 6.2) would fail the whole object's load: leave that program
            // out and say so, so the rest of the sampler still works.
            if wanted && v.is_some() {
                let section = prog.section().to_string_lossy().into_owned();
                let tp = section.rsplit('/').next().unwrap_or_default().to_string();
                if !kernel_has_tracepoint(&tp) {
                    wanted = false;
                    absent.push((name.clone(), tp));
                }
            }
            prog.set_autoload(wanted);
        }
        let mut found = vec![false; self.maps.len()];
        for mut map in obj.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            let Some(i) = self.maps.iter().position(|d| d.name == name) else {
                continue;
            };
            found[i] = true;
            if let Some(per_cpu) = self.maps[i].shape.per_cpu() {
                let entries = u32::try_from(per_cpu * cpus).context("BPF map too large")?;
                map.set_max_entries(entries)
                    .with_context(|| format!("cannot size BPF map {name}"))?;
            }
        }
        if let Some(i) = found.iter().position(|f| !f) {
            anyhow::bail!(
                "the {sampler} BPF object has no map `{}`",
                self.maps[i].name
            );
        }
        Ok(absent)
    }

    fn attach<S: Skel<'static>>(self, skel: S, absent: &[(String, String)], cpus: usize) -> Bpf<S> {
        let disable = &self.ctx.options.disable;
        let mut links = Vec::new();
        let mut programs: Vec<ProgramInfo> = Vec::new();
        for prog in skel.object().progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            let (base, v) = variant(&name);
            let section = prog.section().to_string_lossy().into_owned();
            if (v.is_none() && section == "syscall") || self.unused.contains(&base) {
                continue; // test-only programs are run, not attached
            }
            // Report each hook once: the twin that loaded, or the disabled one.
            let loaded = prog.autoload();
            if !loaded && programs.iter().any(|p| p.name == base) {
                continue;
            }
            let disabled = disable.iter().any(|d| d == base);
            let missing = absent.iter().find(|(n, _)| *n == name);
            if !loaded && !disabled && missing.is_none() {
                continue; // the twin not chosen; its sibling reports the hook
            }
            let mut info = ProgramInfo {
                name: base.to_string(),
                hook: section,
                attached: false,
                reason: None,
            };
            if disabled {
                info.reason = Some("disabled in config".into());
            } else if let Some((_, tp)) = missing {
                info.reason = Some(format!(
                    "tracepoint {tp} is not in this kernel ({}); its series are not exported",
                    kernel_release()
                ));
            } else {
                match prog.attach() {
                    Ok(link) => {
                        links.push((base.to_string(), link));
                        info.attached = true;
                    }
                    Err(e) => info.reason = Some(format!("attach failed: {e}")),
                }
            }
            programs.retain(|p| p.name != info.name);
            programs.push(info);
        }
        {
            let obj = skel.object();
            let progs: Vec<_> = obj.progs().collect();
            let attached = progs.iter().filter_map(|p| {
                let name = p.name().to_str()?;
                let base = variant(name).0;
                (p.autoload() && links.iter().any(|(l, _)| l == base)).then(|| (base, p.as_fd()))
            });
            let maps: Vec<_> = obj.maps().collect();
            let report = BpfInfo::new(
                self.ctx.sampler,
                programs.clone(),
                attached,
                maps.iter().map(|m| m.as_fd()),
            );
            self.ctx.push(report);
        }
        Bpf {
            skel,
            links,
            programs,
            cpus,
            maps: self.maps,
        }
    }
}

/// A loaded object whose programs are not attached yet.
pub struct Loaded<'a> {
    obj: &'a Object,
    maps: &'a [Declared],
}

impl Loaded<'_> {
    /// An owned handle on the declared map `r`.
    pub fn map(&self, r: impl Into<MapRef>) -> anyhow::Result<MapHandle> {
        let name = self.maps[r.into().0].name;
        let map = self
            .obj
            .maps()
            .find(|m| m.name() == name)
            .with_context(|| format!("BPF object has no map `{name}`"))?;
        Ok(MapHandle::try_from(&map)?)
    }
}

impl<S: Skel<'static>> Bpf<S> {
    pub fn object(&self) -> &Object {
        self.skel.object()
    }

    /// The declared banks `r`, mmap'd.
    pub fn banks(&self, r: BanksRef) -> anyhow::Result<Banks> {
        let d = self.maps[r.0];
        let Shape::Banks(width) = d.shape else {
            unreachable!("a BanksRef names banks")
        };
        Banks::new(self.object(), d.name, self.cpus, width)
    }

    /// The declared histograms `r`, mmap'd.
    pub fn histograms(&self, r: HistogramsRef) -> anyhow::Result<Histograms> {
        let d = self.maps[r.0];
        let Shape::Histograms(count) = d.shape else {
            unreachable!("a HistogramsRef names histograms")
        };
        Histograms::new(self.object(), d.name, self.cpus, count)
    }

    /// An owned handle on the declared map `r` (for updates through the
    /// syscall, or a thread of its own).
    pub fn map(&self, r: impl Into<MapRef>) -> anyhow::Result<MapHandle> {
        Loaded {
            obj: self.object(),
            maps: &self.maps,
        }
        .map(r)
    }

    /// Whether the program of `hook` is attached (not disabled, not
    /// missing from this kernel, attach succeeded).
    pub fn attached(&self, hook: &str) -> bool {
        self.programs.iter().any(|p| p.name == hook && p.attached)
    }

    /// Why the program of `hook` is not attached.
    pub fn why_not(&self, hook: &str) -> Option<&str> {
        self.programs
            .iter()
            .find(|p| p.name == hook)
            .and_then(|p| p.reason.as_deref())
    }

    /// A duplicate of the link of iterator program `prog`, for a thread
    /// that runs passes of it (see [`super::run_iter`]) while the object
    /// lives.
    pub fn iter_link(&self, prog: &str) -> anyhow::Result<std::os::fd::OwnedFd> {
        let (_, link) = self
            .links
            .iter()
            .find(|(name, _)| name == prog)
            .with_context(|| format!("iterator program `{prog}` is not attached"))?;
        link.as_fd()
            .try_clone_to_owned()
            .context("cannot duplicate the iterator link")
    }
}
