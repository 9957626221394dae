//! What samplers share: procfs files kept open, number parsing, globs,
//! series keyed by a device or mount that vanish with it, the background
//! worker thread, and the cgroup layout and per-cgroup BPF counters.

pub mod cgroups;
mod keyed;
mod worker;

pub use keyed::Keyed;
pub use worker::Worker;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// A procfs/sysfs file kept open and re-read into one buffer, so a refresh
/// costs a seek and a read, without opening or allocating.
pub struct ProcFile {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
}

impl ProcFile {
    pub fn open(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(ProcFile {
            path,
            file,
            buf: Vec::new(),
        })
    }

    /// The file's current contents.
    ///
    /// One `pread` at offset 0 regenerates a seq_file and returns all of it
    /// when the buffer is large enough (a short read is the whole file); a
    /// full buffer may mean more, so it grows and the read goes on. One
    /// syscall per file in the steady state, where `read_to_end` makes three.
    pub fn read(&mut self) -> anyhow::Result<&str> {
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                let grow = self.buf.len().max(4096);
                self.buf.resize(self.buf.len() + grow, 0);
            }
            let n = self
                .file
                .read_at(&mut self.buf[len..], len as u64)
                .with_context(|| format!("cannot read {}", self.path.display()))?;
            len += n;
            if n == 0 || len < self.buf.len() {
                break;
            }
        }
        std::str::from_utf8(&self.buf[..len])
            .with_context(|| format!("{} is not UTF-8", self.path.display()))
    }
}

/// One interface line of /proc/net/dev (`  eth0: rx_bytes rx_packets …
/// tx_bytes …`, 16 counters): its name and counters. The two header lines
/// have no colon after a name and are skipped.
pub fn net_dev_line(line: &str) -> Option<(&str, [u64; 16])> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains('|') {
        return None;
    }
    let mut v = [0u64; 16];
    for (slot, f) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = f.parse().unwrap_or(0);
    }
    Some((name, v))
}

/// Parses the whitespace-separated unsigned integers of `s`; anything
/// unparsable reads as 0 so one odd field cannot hide the others.
pub fn numbers(s: &str) -> impl Iterator<Item = u64> + '_ {
    s.split_ascii_whitespace().map(|f| f.parse().unwrap_or(0))
}

/// Glob match with `*` (any run of characters), for include/exclude lists.
pub fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

/// Nanoseconds per USER_HZ tick (the unit of /proc/stat and /proc/PID/stat).
pub fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / if hz > 0 { hz as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("loop*", "loop0"));
        assert!(glob("lo", "lo"));
        assert!(!glob("lo", "lo0"));
        assert!(glob("*", "anything"));
        assert!(glob("veth*0", "vethab0"));
        assert!(!glob("veth*0", "vethab1"));
        assert!(glob("/run/*", "/run/user"));
    }
}

#[cfg(test)]
mod net_dev_tests {
    use super::net_dev_line;

    #[test]
    fn parses_net_dev_including_odd_names() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 123456789012 99 1 2 0 0 0 0 555 44 3 4 0 0 0 0
veth1a2b3c4d-long:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
br-9f8e7d6c5b4a: 7 0 0 0 0 0 0 0 8 0 0 0 0 0 0 0
";
        let lines: Vec<_> = text.lines().filter_map(net_dev_line).collect();
        let names: Vec<&str> = lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["lo", "eth0", "veth1a2b3c4d-long", "br-9f8e7d6c5b4a"]
        );
        let eth0 = lines[1].1;
        assert_eq!(
            (eth0[0], eth0[1], eth0[2], eth0[3]),
            (123456789012, 99, 1, 2)
        );
        assert_eq!((eth0[8], eth0[9], eth0[10], eth0[11]), (555, 44, 3, 4));
        // A counter that abuts the colon (long names) still parses.
        assert_eq!(lines[2].1[0], 1);
        assert_eq!(lines[2].1[15], 16);
    }
}
