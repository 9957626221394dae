//! What every long-running mode shares around its work: the tokio runtime,
//! process signals as a stream of events, and the wall-clock ticker.

use std::future::Future;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::sync::broadcast;

/// The runtime of every mode: two workers are plenty for a handful of
/// scrapes and pulls per second.
pub fn build(thread_name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(thread_name)
        .build()
        .context("cannot start the async runtime")
}

static COMPONENT: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names this process's mode ("agent", "exporter", "push", "hindsight")
/// for the `component` label of the metrics every mode has (reloads,
/// rejected requests), so an exporter relaying agents keeps its own apart.
pub fn set_component(name: &'static str) {
    let _ = COMPONENT.set(name);
}

pub fn component() -> &'static str {
    COMPONENT.get().copied().unwrap_or("agent")
}

/// Ignores SIGHUP until [`Events::watch`] handles it, so a reload sent
/// while samplers load does not kill the process (SIGHUP's default).
pub fn ignore_hangup() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler to
    // be unsafe in; tokio installs its own handler over it later.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// What a signal asks of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM or SIGINT: stop accepting, finish in-flight work, exit 0.
    Shutdown,
    /// SIGUSR1: write out what is buffered (`sonde hindsight` dumps its
    /// window); other modes ignore it rather than die of it.
    Dump,
    /// SIGHUP: re-read the config and apply it; a bad one is logged and
    /// the running config stays.
    Reload,
}

/// Process signals turned into [`Event`]s, delivered to every subscriber.
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Events {
    /// Starts watching SIGTERM, SIGINT, SIGUSR1 and SIGHUP; call inside the
    /// runtime. From here on SIGHUP no longer kills the process.
    pub fn watch() -> Events {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, _) = broadcast::channel(4);
        let sender = tx.clone();
        tokio::spawn(async move {
            let (term, int, usr1, hup) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::user_defined1()),
                signal(SignalKind::hangup()),
            );
            let (mut term, mut int, mut usr1, mut hup) = match (term, int, usr1, hup) {
                (Ok(t), Ok(i), Ok(u), Ok(h)) => (t, i, u, h),
                (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM/SIGINT/SIGUSR1/SIGHUP");
                    return;
                }
            };
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    _ = usr1.recv() => {
                        let _ = sender.send(Event::Dump);
                        continue;
                    }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading the config");
                        let _ = sender.send(Event::Reload);
                        continue;
                    }
                };
                tracing::info!("{name}: shutting down");
                crate::systemd::stopping();
                let _ = sender.send(Event::Shutdown);
            }
        });
        Events { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Resolves at the first shutdown request after this call.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.subscribe();
        async move {
            loop {
                match rx.recv().await {
                    Ok(Event::Shutdown) | Err(broadcast::error::RecvError::Closed) => return,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                }
            }
        }
    }
}

crate::family! {
    static RELOADS: Counter {
        name: "sonde_config_reloads",
        unit: Count,
        labels: ["component", "result"],
        sampler: "sonde",
        source: "runtime",
        help: "Config reloads (SIGHUP): success, or failure (the new config was invalid or could not be applied; the running config stays).",
    }
}
crate::family! {
    static LAST_RELOAD: Gauge {
        name: "sonde_config_last_reload_success_timestamp_seconds",
        unit: Count,
        labels: ["component"],
        sampler: "sonde",
        source: "runtime",
        help: "When the config was last loaded successfully (at start or by a reload), in seconds since the epoch.",
    }
}

/// Runs `reload` on every SIGHUP, one at a time, counting the outcomes in
/// `sonde_config_reloads_total` and logging a failure with its (located)
/// errors; the process never exits because of a reload.
pub fn on_reload<F, Fut>(events: &Events, mut reload: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let success = RELOADS.series(&[component(), "success"]);
    let failure = RELOADS.series(&[component(), "failure"]);
    let last = LAST_RELOAD.series(&[component()]);
    last.set_gauge(unix_seconds());
    let mut rx = events.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(Event::Reload) => {}
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
            crate::systemd::reloading();
            let result = reload().await;
            // Back to ready either way: a failed reload keeps the old config.
            crate::systemd::ready("config reloaded");
            match result {
                Ok(()) => {
                    success.add(1);
                    last.set_gauge(unix_seconds());
                    tracing::info!("config reloaded");
                }
                Err(e) => {
                    failure.add(1);
                    tracing::error!("config reload failed:\n{e:#}");
                }
            }
        }
    });
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Time to the next multiple of `interval` since the epoch, so pulls of
/// every process line up on wall-clock boundaries.
pub fn until_next_boundary(interval: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let step = interval.as_nanos().max(1);
    let wait = step - now % step;
    Duration::from_nanos(wait as u64)
}

/// Ticks on wall-clock multiples of an interval (:00, :01, … for 1 s).
pub struct Ticker {
    interval: Duration,
}

impl Ticker {
    pub fn new(interval: Duration) -> Ticker {
        Ticker { interval }
    }

    /// Sleeps until the next boundary.
    pub async fn tick(&mut self) {
        tokio::time::sleep(until_next_boundary(self.interval)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_within_one_interval() {
        let i = Duration::from_millis(250);
        let w = until_next_boundary(i);
        assert!(w > Duration::ZERO && w <= i, "{w:?}");
    }
}
