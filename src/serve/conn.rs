//! One connection as the accept loop tracks it: what it is doing (for the
//! header and idle deadlines, and for choosing whom to evict at the
//! connection cap), and its socket noting when a request starts.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A live connection, as the cap sees it.
pub(super) struct Conn {
    pub(super) state: Arc<ConnState>,
    pub(super) kill: Arc<Notify>,
}

/// What a connection is doing, updated by its IO and its requests.
#[derive(Default)]
pub(super) struct ConnState {
    pub(super) accepted_ms: u64,
    pub(super) requests: AtomicU64,
    pub(super) in_flight: AtomicBool,
    /// When bytes of the next request header began arriving (0: none yet).
    pub(super) pending_ms: AtomicU64,
    /// When the last response was handed back (0: none yet).
    pub(super) done_ms: AtomicU64,
}

/// Why the watchdog closed a connection.
pub(super) enum Expired {
    /// A request header (or the TLS handshake) did not complete in time.
    Header,
    /// Keep-alive with nothing to do.
    Idle,
}

impl ConnState {
    pub(super) fn begin(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.store(true, Ordering::Relaxed);
        self.pending_ms.store(0, Ordering::Relaxed);
    }

    pub(super) fn end(&self) {
        self.done_ms.store(now_ms(), Ordering::Relaxed);
        self.in_flight.store(false, Ordering::Relaxed);
    }

    pub(super) fn completed_none(&self) -> bool {
        self.requests.load(Ordering::Relaxed) == 0 && !self.in_flight.load(Ordering::Relaxed)
    }

    /// The deadline now in force, if any, and what it expires as.
    pub(super) fn deadline(&self, header: Duration, idle: Duration) -> Option<(u64, Expired)> {
        if self.in_flight.load(Ordering::Relaxed) {
            return None;
        }
        let (header, idle) = (header.as_millis() as u64, idle.as_millis() as u64);
        let pending = self.pending_ms.load(Ordering::Relaxed);
        if self.requests.load(Ordering::Relaxed) == 0 {
            Some((self.accepted_ms + header, Expired::Header))
        } else if pending != 0 {
            Some((pending + header, Expired::Header))
        } else {
            Some((self.done_ms.load(Ordering::Relaxed) + idle, Expired::Idle))
        }
    }
}

/// The socket, noting when a new request's bytes start arriving.
pub(super) struct Tracked {
    pub(super) stream: TcpStream,
    pub(super) state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before
            && !self.state.in_flight.load(Ordering::Relaxed)
            && self.state.pending_ms.load(Ordering::Relaxed) == 0
        {
            self.state.pending_ms.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Closes the oldest connection that has not completed a request, or
/// else the oldest idle one; false when every connection is mid-request.
pub(super) fn evict(conns: &mut BTreeMap<u64, Conn>) -> bool {
    let victim = conns
        .iter()
        .find(|(_, c)| c.state.completed_none())
        .or_else(|| {
            conns
                .iter()
                .find(|(_, c)| !c.state.in_flight.load(Ordering::Relaxed))
        })
        .map(|(id, _)| *id);
    match victim.and_then(|id| conns.remove(&id)) {
        Some(c) => {
            c.kill.notify_one();
            true
        }
        None => false,
    }
}

pub(super) async fn watchdog(state: &ConnState, header: Duration, idle: Duration) -> Expired {
    loop {
        let wait = match state.deadline(header, idle) {
            None => header,
            Some((at, why)) => {
                let now = now_ms();
                if now >= at {
                    return why;
                }
                Duration::from_millis(at - now)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Milliseconds since the first use, for per-connection timestamps kept in
/// atomics (0 means "none").
pub(super) fn now_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64 + 1
}
