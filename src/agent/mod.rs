//! Agent mode: load the config, start the samplers, serve the endpoints.

pub mod collector;
pub mod sampler;
pub mod server;
pub mod supervisor;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::agent::AgentConfig;
use collector::Collector;

/// Runs the agent until SIGTERM or SIGINT, then drains in-flight requests.
pub fn run(path: &Path, config: AgentConfig) -> anyhow::Result<()> {
    let collector = Arc::new(Collector::start(&config));
    let pusher = match &config.push_user {
        Some(user) => Some(supervisor::Supervisor::start(&config.push, user)?),
        None => None,
    };
    let runtime = runtime("sonde")?;
    let result = runtime.block_on(async move {
        let addr = config.general.listen.0;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {addr} (key `general.listen` in {}): {}",
                path.display(),
                describe_io(&e)
            )
        })?;
        let local = listener.local_addr()?;
        tracing::info!("listening on http://{local}/metrics");
        axum::serve(listener, server::router(collector))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("HTTP server failed")?;
        tracing::info!("shut down");
        Ok(())
    });
    if let Some(p) = pusher {
        p.stop();
    }
    result
}

/// The runtime of every mode: two workers are plenty for a handful of
/// scrapes and pulls per second.
pub(crate) fn runtime(thread_name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(thread_name)
        .build()
        .context("cannot start the async runtime")
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

pub(crate) fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address already in use (is another agent running?)".into()
        }
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::AddrNotAvailable => "address not available on this host".into(),
        _ => e.to_string(),
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
