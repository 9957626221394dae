//! Agent mode: load the config, start the samplers, serve the endpoints.

pub mod collector;
pub mod config;
pub mod server;
pub mod supervisor;
pub mod systeminfo;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::privileges;
use crate::runtime::{self, Events};
use collector::Collector;
use config::AgentConfig;

/// Re-reads the agent's config file (main supplies it: it knows how to
/// resolve the pusher's spool, which this mode may not import).
pub type Loader = Box<dyn Fn() -> Result<AgentConfig, crate::config::ConfigError> + Send + Sync>;

/// Runs the agent until SIGTERM or SIGINT, then drains in-flight requests.
/// SIGHUP reloads the config with `load`.
pub fn run(path: &Path, config: AgentConfig, load: Loader) -> anyhow::Result<()> {
    runtime::set_component("agent");
    runtime::ignore_hangup();
    let collector = Arc::new(Collector::start(&config));
    let pusher = match &config.push_user {
        Some(user) => Some(supervisor::Supervisor::start(&config.push, user)?),
        None => None,
    };
    let result = runtime::build("sonde")?.block_on(async move {
        let events = Events::watch();
        let (server, handle) = crate::serve::start(&config.listen, path).await?;
        // After the BPF loads, the pusher's spool chown and the bind (a
        // port below 1024 needs CAP_NET_BIND_SERVICE).
        if config.privileges.drop {
            drop_privileges(&config, &collector)?;
        }
        let c = Arc::clone(&collector);
        let running = Arc::new(std::sync::Mutex::new(config));
        let load = Arc::new(load);
        runtime::on_reload(&events, move || {
            let (c, handle, load, running) = (
                Arc::clone(&c),
                handle.clone(),
                Arc::clone(&load),
                Arc::clone(&running),
            );
            async move { reload(&c, &handle, &load, &running).await }
        });
        notify_ready(&collector, server.local_addr()).await;
        crate::serve::run(server, server::router(collector), events.shutdown()).await
    });
    if let Some(p) = pusher {
        p.stop();
    }
    result
}

/// Applies the config file as it is now: `[listen]` first (a new address
/// or unusable TLS files refuse the whole reload), then the samplers, the
/// TTL and the buckets. `[push]`, `[privileges]` and `[log]` are read at
/// start only.
async fn reload(
    collector: &Collector,
    handle: &crate::serve::Handle,
    load: &Loader,
    running: &std::sync::Mutex<AgentConfig>,
) -> anyhow::Result<()> {
    let new = tokio::task::block_in_place(load)?;
    handle.apply(&new.listen).await?;
    let failed = collector.reload(&new).await;
    let mut running = running.lock().unwrap_or_else(|e| e.into_inner());
    for (section, changed) in [
        (
            "[push]",
            format!("{:?}", running.push) != format!("{:?}", new.push),
        ),
        ("[log]", running.log.level != new.log.level),
        (
            "[privileges]",
            format!("{:?}", running.privileges) != format!("{:?}", new.privileges),
        ),
    ] {
        if changed {
            tracing::warn!("{section} changed: it takes effect when the agent restarts");
        }
    }
    *running = new;
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "applied, except samplers that could not start:\n{}",
            failed.join("\n")
        )
    }
}

/// Drops every capability the running samplers and the pusher do not need
/// (see `crate::privileges`), then refreshes once so a sampler that cannot
/// refresh without what was dropped fails now, loudly, not at a scrape.
fn drop_privileges(config: &AgentConfig, collector: &Collector) -> anyhow::Result<()> {
    let mut keep = 0;
    for i in collector.instances().iter().filter(|i| i.active()) {
        keep |= privileges::needs(i.name);
    }
    let uid = config.privileges_user.as_ref().map_or(0, |u| u.uid);
    let gid = config.privileges_user.as_ref().map_or(0, |u| u.gid);
    if let Some(push) = &config.push_user {
        if (push.uid, push.gid) != (uid, gid) {
            keep |= privileges::PUSH_AS_OTHER_USER;
        }
    }
    let d = privileges::drop_all(keep, config.privileges_user.as_ref()).context(
        "cannot drop privileges (set `[privileges] drop = false` to run without the drop)",
    )?;
    if d.missing != 0 {
        tracing::warn!(
            "privileges: the agent was started without {}, which it would keep",
            privileges::names(d.missing)
        );
    }
    tracing::info!(
        "privileges dropped: kept {}; no_new_privs; user {} ({} threads, {:?})",
        privileges::names(d.kept),
        d.user.as_deref().unwrap_or("root"),
        d.threads,
        d.took
    );
    collector.refresh();
    for r in collector.reports() {
        if r.status == collector::Status::Active {
            if let Some(e) = r.reason {
                tracing::error!(
                    "sampler {}: FAILED its first refresh after the privilege drop: {e}",
                    r.name
                );
            }
        }
    }
    Ok(())
}

/// A refresh stuck this long means a sampler hangs (refreshes take
/// milliseconds): the watchdog stops pinging and systemd restarts us.
const WEDGED: std::time::Duration = std::time::Duration::from_secs(10);

/// Refreshes once (so the first scrape and READY see sampler data), starts
/// the systemd watchdog and tells systemd we are ready; no-ops without it.
async fn notify_ready(collector: &Arc<Collector>, addr: Option<std::net::SocketAddr>) {
    collector.refresh_now().await;
    let c = Arc::clone(collector);
    // Detached: it pings until the runtime shuts down.
    let _ = crate::systemd::spawn_watchdog(move || !c.wedged(WEDGED));
    let reports = collector.reports();
    let active = reports
        .iter()
        .filter(|r| r.status == collector::Status::Active)
        .count();
    let addr = addr.map(|a| a.to_string()).unwrap_or_default();
    crate::systemd::ready(&format!(
        "{active} of {} samplers active; serving http://{addr}/metrics",
        reports.len()
    ));
}

/// Refreshes every sampler once and prints Prometheus text to stdout.
pub fn once(config: AgentConfig) -> anyhow::Result<()> {
    use std::io::Write as _;
    let collector = Collector::start(&config);
    collector.refresh();
    let text = collector.render_text();
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .context("cannot write to stdout")
}
