//! The one sequence every long-running mode (agent, exporter, push,
//! hindsight) runs around its own work: name the component, ignore SIGHUP
//! until it is handled, bind `[listen]` (a taken port fails before any work
//! starts), start the work, reload on SIGHUP, feed the systemd watchdog,
//! say READY, serve until SIGTERM or SIGINT, then stop the work.
//!
//! A mode says what is its own by implementing [`Daemon`]; it never writes
//! this sequence again.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::{get, MethodRouter};
use axum::Router;
use bytes::Bytes;

use crate::config::{ConfigError, Listen};
use crate::prometheus::text::TEXT_CONTENT_TYPE;
use crate::prometheus::{Format, Renderer};
use crate::runtime::{self, Events};
use crate::serve;

/// Re-reads a mode's config file on SIGHUP. Main supplies it: it knows
/// what a config needs from elsewhere (the agent's `[push]` reads the
/// pusher's file, and a mode never imports another mode).
pub type Reload<C> = Box<dyn Fn(&Path) -> Result<C, ConfigError> + Send + Sync>;

/// A long-running mode: its config, its work, its routes.
pub trait Daemon: Send + Sync + Sized + 'static {
    /// Compared with `==` on reload, so a mode restarts only what changed.
    type Config: PartialEq + Send + Sync + 'static;

    /// The `component` label of the metrics every mode has (reloads,
    /// rejected requests) and the runtime's thread names.
    const COMPONENT: &'static str;

    /// The config's `[listen]` section.
    fn listen(config: &Self::Config) -> &Listen;

    /// Starts the work once the listener is bound; `events` carries the
    /// signals (hindsight dumps on SIGUSR1).
    fn start(
        path: &Path,
        config: &Self::Config,
        events: &Events,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Once the work runs, before READY: waits for what the first scrape
    /// must see and returns the systemd status line.
    fn ready(&self) -> impl Future<Output = String> + Send;

    /// The mode's routes; `/healthz` and the 404 are added by `serve`.
    fn router(self: &Arc<Self>) -> Router;

    /// The watchdog's liveness check: false stops the pings and systemd
    /// restarts the process.
    fn alive(&self) -> bool;

    /// Applies a reloaded config, whose `[listen]` is already applied.
    /// `Err`: nothing else was applied (the running config stays);
    /// `Ok(Some(problems))`: applied except what `problems` says (the
    /// reload counts as failed, the new config is the running one).
    fn reload(
        &self,
        running: &Self::Config,
        new: &Self::Config,
    ) -> impl Future<Output = anyhow::Result<Option<String>>> + Send;

    /// After the server stopped serving: stop the work.
    fn stop(&self) -> impl Future<Output = ()> + Send;
}

/// `GET /metrics` of a mode's own metrics (the registry as Prometheus
/// text), for the modes whose only metrics are their own.
pub fn own_metrics() -> MethodRouter {
    let renderer = Arc::new(Renderer::default());
    get(move || async move {
        let mut out = String::new();
        renderer.render(Format::Text, &mut out);
        serve::bytes_response(TEXT_CONTENT_TYPE, Bytes::from(out))
    })
}

/// Runs mode `D` on `config` (read from `path`) until SIGTERM or SIGINT;
/// SIGHUP re-reads the file with `reload`.
pub fn run<D: Daemon>(
    path: &Path,
    config: D::Config,
    reload: Reload<D::Config>,
) -> anyhow::Result<()> {
    runtime::set_component(D::COMPONENT);
    runtime::ignore_hangup();
    let threads = format!("sonde-{}", D::COMPONENT);
    runtime::build(&threads)?.block_on(serve_until_shutdown::<D>(
        path.to_path_buf(),
        config,
        reload,
    ))
}

async fn serve_until_shutdown<D: Daemon>(
    path: PathBuf,
    config: D::Config,
    reload: Reload<D::Config>,
) -> anyhow::Result<()> {
    let events = Events::watch();
    // Subscribed before the work starts: a SIGTERM while it starts (a BPF
    // load, a first walk) stops the mode instead of being lost.
    let mut shutdown = Box::pin(events.shutdown());
    let (server, handle) = serve::start(D::listen(&config), &path).await?;
    // `biased`: a stop already asked wins over work that is ready too.
    let daemon = tokio::select! {
        biased;
        _ = &mut shutdown => return Ok(()),
        started = D::start(&path, &config, &events) => Arc::new(started?),
    };
    let running = Arc::new(tokio::sync::Mutex::new(config));
    let reload = Arc::new(reload);
    {
        let daemon = Arc::clone(&daemon);
        runtime::on_reload(&events, move || {
            let (daemon, running, reload, handle, path) = (
                Arc::clone(&daemon),
                Arc::clone(&running),
                Arc::clone(&reload),
                handle.clone(),
                path.clone(),
            );
            async move {
                let stays = "the running config stays";
                let new = tokio::task::block_in_place(|| reload(&path))
                    .map_err(|e| anyhow::anyhow!("{e}\n{stays}"))?;
                // One reload at a time; `running` is the config last
                // applied (sections read at start only are compared with
                // it, to say they changed).
                let mut running = running.lock().await;
                handle
                    .apply(D::listen(&new))
                    .await
                    .map_err(|e| e.context(stays))?;
                let problems = daemon
                    .reload(&running, &new)
                    .await
                    .map_err(|e| e.context(stays))?;
                *running = new;
                match problems {
                    None => Ok(()),
                    Some(p) => Err(anyhow::anyhow!("{p}")),
                }
            }
        });
    }
    let mut status = tokio::select! {
        biased;
        _ = &mut shutdown => {
            daemon.stop().await;
            return Ok(());
        }
        status = daemon.ready() => status,
    };
    if let Some(addr) = server.local_addr() {
        status.push_str(&format!("; listening on {addr}"));
    }
    {
        let daemon = Arc::clone(&daemon);
        // Detached: it pings until the runtime shuts down.
        let _ = crate::systemd::spawn_watchdog(move || daemon.alive());
    }
    crate::systemd::ready(&status);
    let result = serve::run(server, daemon.router(), shutdown).await;
    daemon.stop().await;
    result
}
