//! The service manager's notification protocol (`sd_notify(3)`), written
//! here rather than linked from libsystemd: one datagram per state change
//! to the socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an
//! abstract socket), and `WATCHDOG=1` pings at half of `$WATCHDOG_USEC`
//! while the caller's liveness check passes.
//!
//! Everything is a no-op when `$NOTIFY_SOCKET` is unset (run by hand, by
//! the tests, under another supervisor): one cached lookup, no syscall.
//! A failed send is logged once and never stops the process: the service
//! manager notices a missing READY or watchdog ping on its own.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variables of the protocol; children we start (the
/// supervised pusher) must not inherit them, or they would speak for us.
pub const ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
static SEND_FAILED: AtomicBool = AtomicBool::new(false);

fn notifier() -> Option<&'static Notifier> {
    NOTIFIER
        .get_or_init(|| {
            let name = std::env::var_os("NOTIFY_SOCKET")?;
            match connect(&name) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(
                        "NOTIFY_SOCKET={}: {e}; not notifying the service manager",
                        name.to_string_lossy()
                    );
                    None
                }
            }
        })
        .as_ref()
}

fn connect(name: &std::ffi::OsStr) -> std::io::Result<Notifier> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = name.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(abstract_name)?
        }
        None if bytes.starts_with(b"/") => SocketAddr::from_pathname(name)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor an @abstract name",
            ))
        }
    };
    Ok(Notifier {
        socket: UnixDatagram::unbound()?,
        addr,
    })
}

/// Whether a service manager listens (`$NOTIFY_SOCKET` is set and usable).
pub fn enabled() -> bool {
    notifier().is_some()
}

/// Sends `state` (newline-separated `KEY=VALUE` lines) as one datagram.
pub fn notify(state: &str) {
    let Some(n) = notifier() else { return };
    if let Err(e) = n.socket.send_to_addr(state.as_bytes(), &n.addr) {
        if !SEND_FAILED.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot notify the service manager ({state:?}): {e}; further failures are not logged");
        }
    }
}

/// `READY=1`: started and serving; with a status line for `systemctl status`.
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={}", one_line(status)));
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd 253+ requires for
/// `Type=notify-reload` (ignored by older managers and by `Type=notify`).
/// Send [`ready`] when the reload is done.
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// `STOPPING=1`: shutting down on purpose.
pub fn stopping() {
    notify("STOPPING=1");
}

/// `STATUS=…`: one line shown by `systemctl status`.
pub fn status(text: &str) {
    notify(&format!("STATUS={}", one_line(text)));
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The watchdog interval the manager expects pings within (`WatchdogSec=`),
/// when it is meant for this process (`$WATCHDOG_PID` unset or our pid) and
/// a notify socket exists to ping.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
    .filter(|_| enabled())
}

fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings `WATCHDOG=1` every half interval while `alive()` says the process
/// is doing its work; when it says otherwise the pings stop (once logged)
/// and the manager restarts us after the interval. A tokio task, so the
/// pings also prove the runtime still schedules. `None` without a watchdog.
pub fn spawn_watchdog(
    alive: impl Fn() -> bool + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = watchdog_interval()?;
    let every = interval / 2;
    tracing::info!("systemd watchdog: {interval:?}, pinging every {every:?} while healthy");
    Some(tokio::spawn(async move {
        let mut wedged = false;
        loop {
            if alive() {
                if wedged {
                    tracing::info!("systemd watchdog: healthy again, pinging");
                    wedged = false;
                }
                notify("WATCHDOG=1");
            } else if !wedged {
                tracing::error!("systemd watchdog: liveness check failed, not pinging");
                wedged = true;
            }
            tokio::time::sleep(every).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_env() {
        assert_eq!(
            watchdog_from(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            watchdog_from(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        // Meant for another process (our parent, a forked child).
        assert_eq!(watchdog_from(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("2000000"), Some("x"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_from(None, None, 7), None);
    }

    #[test]
    fn addresses() {
        use std::ffi::OsStr;
        assert!(connect(OsStr::new("/run/systemd/notify")).is_ok());
        assert!(connect(OsStr::new("@sonde-test")).is_ok());
        assert!(connect(OsStr::new("relative")).is_err());
    }

    #[test]
    fn sends_to_a_path_and_an_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = connect(path.as_os_str()).unwrap();
        n.socket.send_to_addr(b"READY=1", &n.addr).unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");

        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("sonde-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        let n = connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        n.socket.send_to_addr(b"WATCHDOG=1", &n.addr).unwrap();
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn monotonic_is_plausible() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_usec() >= a + 1_000);
    }
}
