//! Agent mode: load the config, start the samplers, serve the endpoints.

pub mod collector;
pub mod config;
pub mod server;
pub mod supervisor;
pub mod systeminfo;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::runtime::{self, Events};
use collector::Collector;
use config::AgentConfig;

/// Runs the agent until SIGTERM or SIGINT, then drains in-flight requests.
pub fn run(path: &Path, config: AgentConfig) -> anyhow::Result<()> {
    let collector = Arc::new(Collector::start(&config));
    let pusher = match &config.push_user {
        Some(user) => Some(supervisor::Supervisor::start(&config.push, user)?),
        None => None,
    };
    let result = runtime::build("sonde")?.block_on(async move {
        let events = Events::watch();
        let listener = crate::serve::bind(&config.listen, path).await?;
        notify_ready(&collector, &listener).await;
        crate::serve::run(listener, server::router(collector), events.shutdown()).await
    });
    if let Some(p) = pusher {
        p.stop();
    }
    result
}

/// A refresh stuck this long means a sampler hangs (refreshes take
/// milliseconds): the watchdog stops pinging and systemd restarts us.
const WEDGED: std::time::Duration = std::time::Duration::from_secs(10);

/// Refreshes once (so the first scrape and READY see sampler data), starts
/// the systemd watchdog and tells systemd we are ready; no-ops without it.
async fn notify_ready(collector: &Arc<Collector>, listener: &tokio::net::TcpListener) {
    collector.refresh_now().await;
    let c = Arc::clone(collector);
    // Detached: it pings until the runtime shuts down.
    let _ = crate::systemd::spawn_watchdog(move || !c.wedged(WEDGED));
    let reports = collector.reports();
    let active = reports
        .iter()
        .filter(|r| r.status == collector::Status::Active)
        .count();
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
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
