//! Runs `sonde push` as a child of the agent (`[push] enabled = true`):
//! as an unprivileged user, restarted with backoff when it exits, stopped
//! with the agent, and killed by the kernel if the agent dies first.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::{Push, User};

const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A child that ran this long was healthy: the next restart is quick again.
const HEALTHY: Duration = Duration::from_secs(60);

pub struct Supervisor {
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicI32>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    pub fn start(push: &Push, user: &User) -> anyhow::Result<Supervisor> {
        // The pusher writes its spool as `user`: make the directory theirs.
        std::fs::create_dir_all(&user.spool).map_err(|e| {
            anyhow::anyhow!("cannot create the push spool {}: {e}", user.spool.display())
        })?;
        std::os::unix::fs::chown(&user.spool, Some(user.uid), Some(user.gid)).map_err(|e| {
            anyhow::anyhow!(
                "cannot give the push spool {} to `{}`: {e}",
                user.spool.display(),
                user.name
            )
        })?;
        let exe = std::env::current_exe()?;
        let stop = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(AtomicI32::new(0));
        let (config, user) = (push.config.clone(), user.clone());
        let (s, p) = (Arc::clone(&stop), Arc::clone(&pid));
        let thread = std::thread::Builder::new()
            .name("push-supervisor".into())
            .spawn(move || {
                let mut backoff = Duration::from_secs(1);
                while !s.load(Ordering::Relaxed) {
                    let mut cmd = Command::new(&exe);
                    cmd.arg("push").arg(&config).stdin(Stdio::null());
                    // Only the agent speaks to systemd for this unit.
                    for var in crate::systemd::ENV {
                        cmd.env_remove(var);
                    }
                    let (uid, gid) = (user.uid, user.gid);
                    // SAFETY: only raw syscalls, async-signal-safe, fine
                    // between fork and exec (the child has one thread).
                    unsafe {
                        cmd.pre_exec(move || {
                            // Not std's Command::uid: it keeps the agent's
                            // supplementary groups unless the agent is uid 0,
                            // and after `[privileges] user` it is not.
                            if (uid, gid) != (libc::getuid(), libc::getgid()) {
                                for r in [
                                    libc::syscall(
                                        libc::SYS_setgroups,
                                        0,
                                        std::ptr::null::<libc::gid_t>(),
                                    ),
                                    libc::syscall(libc::SYS_setresgid, gid, gid, gid),
                                    libc::syscall(libc::SYS_setresuid, uid, uid, uid),
                                ] {
                                    if r != 0 {
                                        return Err(std::io::Error::last_os_error());
                                    }
                                }
                            }
                            // If the agent dies (even SIGKILL), so does the
                            // pusher. After the uid change, which clears it.
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                            Ok(())
                        });
                    }
                    let started = Instant::now();
                    match cmd.spawn() {
                        Ok(mut child) => {
                            p.store(child.id() as i32, Ordering::Relaxed);
                            tracing::info!(
                                "push: started pid {} as user {}",
                                child.id(),
                                user.name
                            );
                            let status = child.wait();
                            p.store(0, Ordering::Relaxed);
                            if s.load(Ordering::Relaxed) {
                                break;
                            }
                            if started.elapsed() >= HEALTHY {
                                backoff = Duration::from_secs(1);
                            }
                            match status {
                                Ok(st) => {
                                    tracing::warn!("push: exited ({st}); restarting in {backoff:?}")
                                }
                                Err(e) => tracing::warn!(
                                    "push: wait failed ({e}); restarting in {backoff:?}"
                                ),
                            }
                        }
                        Err(e) => tracing::error!(
                            "push: cannot start {}: {e}; retrying in {backoff:?}",
                            exe.display()
                        ),
                    }
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !s.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            })?;
        Ok(Supervisor {
            stop,
            pid,
            thread: Some(thread),
        })
    }

    /// SIGTERM to the pusher (which keeps its spool), SIGKILL after 5 s.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let pid = self.pid.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: signalling a pid we started and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pid.load(Ordering::Relaxed) != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = self.pid.load(Ordering::Relaxed);
        if pid > 0 {
            tracing::warn!("push: did not stop within 5 s; killing it");
            // SAFETY: signalling a pid we started and have not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
