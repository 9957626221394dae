//! Agent mode: load the config, start the samplers, serve the endpoints.

pub mod collector;
pub mod config;
pub mod instance;
pub mod samplers;
pub mod server;
pub mod supervisor;
pub mod systeminfo;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;

use crate::config::Listen;
use crate::daemon::{self, Daemon, Reload};
use crate::privileges;
use crate::runtime::Events;
use collector::Collector;
use config::AgentConfig;

/// Runs the agent until SIGTERM or SIGINT, then drains in-flight requests.
/// SIGHUP re-reads the config with `reload`.
pub fn run(path: &Path, config: AgentConfig, reload: Reload<AgentConfig>) -> anyhow::Result<()> {
    daemon::run::<Agent>(path, config, reload)
}

/// The agent as a [`Daemon`]: the samplers behind the scrape cache, and
/// the supervised pusher.
pub struct Agent {
    collector: Arc<Collector>,
    pusher: std::sync::Mutex<Option<supervisor::Supervisor>>,
}

impl Daemon for Agent {
    type Config = AgentConfig;
    const COMPONENT: &'static str = "agent";

    fn listen(config: &AgentConfig) -> &Listen {
        &config.listen
    }

    async fn start(_: &Path, config: &AgentConfig, _: &Events) -> anyhow::Result<Self> {
        // Loading BPF programs takes a moment of this thread.
        let collector = Arc::new(tokio::task::block_in_place(|| Collector::start(config)));
        let pusher = match &config.push_user {
            Some(user) => Some(supervisor::Supervisor::start(&config.push, user)?),
            None => None,
        };
        // After the BPF loads, the pusher's spool chown and the bind (a
        // port below 1024 needs CAP_NET_BIND_SERVICE).
        if config.privileges.drop {
            if let Err(e) = drop_privileges(config, &collector) {
                if let Some(p) = pusher {
                    tokio::task::block_in_place(|| p.stop());
                }
                return Err(e);
            }
        }
        Ok(Agent {
            collector,
            pusher: std::sync::Mutex::new(pusher),
        })
    }

    /// Refreshes once, so the first scrape and READY see sampler data.
    async fn ready(&self) -> String {
        self.collector.refresh_now().await;
        let reports = self.collector.samplers.reports();
        let active = reports
            .iter()
            .filter(|r| r.status == instance::Status::Active)
            .count();
        format!("{active} of {} samplers active", reports.len())
    }

    fn router(self: &Arc<Self>) -> Router {
        server::router(Arc::clone(&self.collector))
    }

    fn alive(&self) -> bool {
        !self.collector.samplers.wedged(WEDGED)
    }

    /// `[listen]` is applied first (a new address or unusable TLS files
    /// refuse the whole reload), then the samplers, the TTL and the
    /// buckets. `[push]`, `[privileges]` and `[log]` are read at start only.
    async fn reload(
        &self,
        running: &AgentConfig,
        new: &AgentConfig,
    ) -> anyhow::Result<Option<String>> {
        let failed = self.collector.reload(new).await;
        for (section, changed) in [
            ("[push]", running.push != new.push),
            ("[log]", running.log != new.log),
            ("[privileges]", running.privileges != new.privileges),
        ] {
            if changed {
                tracing::warn!("{section} changed: it takes effect when the agent restarts");
            }
        }
        Ok((!failed.is_empty()).then(|| {
            format!(
                "the new config is applied, except samplers that could not start:\n{}",
                failed.join("\n")
            )
        }))
    }

    async fn stop(&self) {
        let pusher = self.pusher.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = pusher {
            tokio::task::block_in_place(|| p.stop());
        }
    }
}

/// Drops every capability the running samplers and the pusher do not need
/// (see `crate::privileges`), then refreshes once so a sampler that cannot
/// refresh without what was dropped fails now, loudly, not at a scrape.
fn drop_privileges(config: &AgentConfig, collector: &Collector) -> anyhow::Result<()> {
    let mut keep = 0;
    for i in collector.samplers.instances().iter().filter(|i| i.active()) {
        keep |= i.capabilities;
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
    for r in collector.samplers.reports() {
        if r.status == instance::Status::Active {
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
