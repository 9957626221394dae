//! A sampler's background thread, written once: slow sources (cgroupfs,
//! mounts, /proc walks, TCP iterator passes) run here, off the scrape
//! path, and store their values in series a scrape only reads.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The handle on a running worker thread; dropping it stops the thread at
/// its next wake-up (a pass under way finishes first, and is not waited
/// for: a statvfs on a dead NFS mount must not hang the agent's reload).
pub struct Worker {
    name: &'static str,
    thread: JoinHandle<()>,
    _stop: mpsc::Sender<()>,
}

impl Worker {
    /// Starts thread `name`: `setup` builds its state on the thread (so the
    /// state need not be `Send`), then `pass` runs after `first` and again
    /// after the wait each pass returns.
    pub fn spawn<S, F>(
        name: &'static str,
        first: Duration,
        setup: impl FnOnce() -> S + Send + 'static,
        mut pass: F,
    ) -> std::io::Result<Worker>
    where
        F: FnMut(&mut S) -> Duration + Send + 'static,
    {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut state = setup();
                let mut wait = first;
                loop {
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => wait = pass(&mut state),
                        // Stopped, or the handle dropped.
                        _ => return,
                    }
                }
            })?;
        Ok(Worker {
            name,
            thread,
            _stop: stop,
        })
    }

    /// An error once the thread has ended (it panicked): the sampler's
    /// refresh returns it, so `/samplers` and `sonde_sampler_up` say so.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.thread.is_finished() {
            anyhow::bail!("the {} thread stopped", self.name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn passes_run_until_the_handle_is_dropped() {
        let passes = Arc::new(AtomicUsize::new(0));
        let p = Arc::clone(&passes);
        let w = Worker::spawn(
            "sonde-test",
            Duration::from_millis(1),
            move || p,
            |p| {
                p.fetch_add(1, Ordering::Relaxed);
                Duration::from_millis(1)
            },
        )
        .unwrap();
        while passes.load(Ordering::Relaxed) < 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(w.check().is_ok());
        drop(w);
        std::thread::sleep(Duration::from_millis(20));
        let after = passes.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(passes.load(Ordering::Relaxed), after, "passes after drop");
    }

    #[test]
    fn a_dead_thread_is_reported() {
        let w =
            Worker::spawn("sonde-test-dies", Duration::ZERO, || (), |_| panic!("boom")).unwrap();
        while w.check().is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            w.check().unwrap_err().to_string(),
            "the sonde-test-dies thread stopped"
        );
    }
}
