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

/// What a signal asks of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM or SIGINT: stop accepting, finish in-flight work, exit 0.
    Shutdown,
    /// SIGUSR1: write out what is buffered (`sonde hindsight` dumps its
    /// window); other modes ignore it rather than die of it.
    Dump,
}

/// Process signals turned into [`Event`]s, delivered to every subscriber.
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Events {
    /// Starts watching SIGTERM, SIGINT and SIGUSR1; call inside the runtime.
    pub fn watch() -> Events {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, _) = broadcast::channel(4);
        let sender = tx.clone();
        tokio::spawn(async move {
            let (term, int, usr1) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::user_defined1()),
            );
            let (mut term, mut int, mut usr1) = match (term, int, usr1) {
                (Ok(t), Ok(i), Ok(u)) => (t, i, u),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM/SIGINT/SIGUSR1");
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
