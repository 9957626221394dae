//! `sonde view`: a recording (ours, a hindsight dump or Rezolus's
//! parquet), two recordings side by side, or a live agent, in the
//! browser. The page and its script are embedded in the binary and served
//! through the serve/ layer (so `[listen]`'s TLS, credentials and
//! allowlist apply); the page asks `/api/*` for charts already reduced to
//! its pixel width, computed here by the query engine and the analyses.

mod api;
mod assets;
mod compute;
mod data;
mod heat;
mod live;
mod sections;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;

use crate::config::{check_sections, listen_section, Checker, Listen, ListenAddr};
use crate::parquet::Recording;
use crate::query::{Memory, Source};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:4255";

/// What `sonde view` was asked to show.
pub struct Options {
    /// One recording or agent URL, or two recordings (A and B).
    pub sources: Vec<String>,
    /// Overrides `[listen] address` of the config.
    pub listen: Option<SocketAddr>,
    /// A TOML file with a `[listen]` section (TLS, credentials, allowlist).
    pub config: Option<PathBuf>,
    /// For an agent: time between polls, and how much to keep.
    pub interval: Duration,
    pub keep: Duration,
}

pub(crate) enum Data {
    File(Box<Recording>),
    Live(Arc<live::Live>),
}

/// A source the page shows, as "A" or "B".
pub(crate) struct Opened {
    pub label: &'static str,
    pub name: String,
    pub data: Data,
    /// Offsets count from here: the first row (ns since the epoch).
    pub base: i64,
    /// A recording's gaps and cgroups, read once.
    pub facts: std::sync::OnceLock<api::Facts>,
}

pub(crate) enum Guard<'a> {
    File(&'a Recording),
    Live(RwLockReadGuard<'a, Memory>),
}

impl Guard<'_> {
    pub fn source(&self) -> &dyn Source {
        match self {
            Guard::File(r) => *r,
            Guard::Live(m) => &**m,
        }
    }
}

impl Opened {
    pub fn guard(&self) -> Guard<'_> {
        match &self.data {
            Data::File(r) => Guard::File(r),
            Data::Live(l) => Guard::Live(l.memory.read().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

pub(crate) struct State {
    pub sources: Vec<Opened>,
    pub assets: assets::Assets,
}

impl State {
    /// Runs `f` over every source with the page's choices.
    pub fn with<R>(
        &self,
        cgroup: Option<&str>,
        f: impl FnOnce(&[(&'static str, data::Ctx<'_>)]) -> R,
    ) -> R {
        let guards: Vec<Guard<'_>> = self.sources.iter().map(Opened::guard).collect();
        let ctxs: Vec<(&'static str, data::Ctx<'_>)> = self
            .sources
            .iter()
            .zip(&guards)
            .map(|(s, g)| {
                (
                    s.label,
                    data::Ctx {
                        src: g.source(),
                        base: s.base,
                        cgroup,
                    },
                )
            })
            .collect();
        f(&ctxs)
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// `[listen]` of a view config: the only section it takes.
fn load_listen(path: &Path) -> anyhow::Result<Listen> {
    let source = crate::config::Source::read(path)?;
    let mut table = source.table()?;
    let mut c = Checker::new(&source);
    check_sections(&mut c, &table, &["listen"]);
    let listen = listen_section(&mut c, &mut table, DEFAULT_LISTEN);
    crate::serve::check_listen(&mut c, &listen);
    Ok(c.finish(Some(listen))?)
}

async fn open(label: &'static str, name: &str, o: &Options) -> anyhow::Result<Opened> {
    if is_url(name) {
        let live = Arc::new(live::Live::connect(name, o.interval, o.keep).await?);
        let first = live
            .memory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .timestamps()
            .first()
            .copied();
        let Some(base) = first else {
            anyhow::bail!("{name} answered, but with no snapshot to show");
        };
        tokio::spawn(Arc::clone(&live).run());
        return Ok(Opened {
            label,
            name: name.trim_end_matches('/').to_string(),
            data: Data::Live(live),
            base,
            facts: Default::default(),
        });
    }
    let path = PathBuf::from(name);
    let rec = tokio::task::spawn_blocking(move || Recording::open(&path)).await??;
    let Some(&base) = rec.timestamps().first() else {
        anyhow::bail!("{name}: the recording has no rows");
    };
    Ok(Opened {
        label,
        name: name.to_string(),
        data: Data::File(Box::new(rec)),
        base,
        facts: Default::default(),
    })
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Serves the page until Ctrl-C or SIGTERM.
pub fn run(o: Options) -> anyhow::Result<()> {
    if o.sources.is_empty() || o.sources.len() > 2 {
        anyhow::bail!("give one recording or agent URL, or two recordings to compare (A and B)");
    }
    if o.interval < Duration::from_millis(100) {
        anyhow::bail!(
            "--interval {:?} is too short: an agent is polled at 100ms at the fastest",
            o.interval
        );
    }
    if o.sources.len() == 2 && o.sources.iter().any(|s| is_url(s)) {
        anyhow::bail!(
            "A/B compares two recordings; view a live agent alone (or record it with `sonde record` first)"
        );
    }
    let (mut listen, config) = match &o.config {
        Some(p) => (load_listen(p)?, p.clone()),
        None => (Listen::on(DEFAULT_LISTEN), PathBuf::from("(command line)")),
    };
    if let Some(a) = o.listen {
        listen.address = ListenAddr(a);
    }
    let rt = crate::runtime::build("sonde-view")?;
    rt.block_on(async move {
        let mut sources = Vec::new();
        for (name, label) in o.sources.iter().zip(["A", "B"]) {
            sources.push(open(label, name, &o).await?);
        }
        let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        let names = names.join(" and ");
        let state = Arc::new(State {
            sources,
            assets: assets::Assets::new(),
        });
        let (server, _handle) = crate::serve::start(&listen, &config).await?;
        let scheme = match (&listen.tls_cert_file, &listen.web_config_file) {
            (Some(_), _) => "https",
            // The web config says whether it serves TLS.
            (None, Some(_)) => "http(s)",
            (None, None) => "http",
        };
        let open = listen.basic_auth_users.is_empty()
            && listen.bearer_token_file.is_none()
            && listen.tls_client_ca_file.is_none()
            && listen.web_config_file.is_none()
            && listen.allow.is_empty();
        if open && !listen.address.0.ip().is_loopback() {
            eprintln!(
                "sonde view: warning: serving {} to every client that reaches {}: \
                 set credentials or an allowlist in --config's [listen]",
                names, listen.address.0
            );
        }
        let addr = server
            .local_addr()
            .map_or_else(|| listen.address.0.to_string(), |a| a.to_string());
        eprintln!("sonde view: {names} on {scheme}://{addr}/ (Ctrl-C stops)");
        crate::serve::run(server, api::router(state), shutdown()).await
    })
}
