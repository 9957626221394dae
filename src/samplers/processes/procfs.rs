//! Reading /proc/PID/*: pure parsers over bytes (tested with fixtures) and
//! the few syscalls a walk makes per process, into buffers that live as
//! long as the walker (no allocation per process in the steady state).

use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// What a walk keeps of /proc/PID/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat<'a> {
    /// The command name between the first `(` and the last `)`: it may
    /// itself hold spaces and parentheses.
    pub comm: &'a [u8],
    pub state: u8,
    /// `task->flags` (PF_KTHREAD marks kernel threads).
    pub flags: u64,
    /// User and system time of all threads, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub threads: u64,
    /// Start time in clock ticks since boot: with the pid, the process's
    /// identity (pids are reused).
    pub start: u64,
    pub vsize: u64,
    /// Resident pages.
    pub rss: u64,
}

/// Parses /proc/PID/stat (`pid (comm) state ppid …`).
pub fn parse_stat(text: &[u8]) -> Option<Stat<'_>> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = &text[open + 1..close];
    let mut f = text[close + 1..]
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty());
    let state = *f.next()?.first()?;
    // Fields after comm, counted from state = 0 (proc(5) numbers from 1
    // with pid, so field n is index n - 3 here).
    let mut num = |skip: usize| -> Option<u64> { number(f.nth(skip)?) };
    let flags = num(5)?; // 9
    let utime = num(4)?; // 14
    let stime = num(0)?; // 15
    let threads = num(4)?; // 20
    let start = num(1)?; // 22
    let vsize = num(0)?; // 23
    let rss = num(0)?; // 24
    Some(Stat {
        comm,
        state,
        flags,
        utime,
        stime,
        threads,
        start,
        vsize,
        rss,
    })
}

/// An unsigned decimal field; a negative one (rss can briefly read -1 in
/// old kernels) reads as 0.
fn number(f: &[u8]) -> Option<u64> {
    if f.first() == Some(&b'-') {
        return Some(0);
    }
    let mut v: u64 = 0;
    for &b in f {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// The `Name:\tvalue` lines a walk wants from /proc/PID/status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Real user id.
    pub uid: u32,
    /// Swapped-out anonymous memory, bytes (`VmSwap`; 0 for kernel threads).
    pub swap: u64,
}

pub fn parse_status(text: &[u8]) -> Status {
    let mut s = Status::default();
    for line in text.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"Uid:") {
            s.uid = first_number(v).unwrap_or(0) as u32;
        } else if let Some(v) = line.strip_prefix(b"VmSwap:") {
            s.swap = first_number(v).unwrap_or(0) * 1024;
            break; // after Uid; nothing further is wanted
        }
    }
    s
}

fn first_number(v: &[u8]) -> Option<u64> {
    v.split(|b| b.is_ascii_whitespace())
        .find(|f| !f.is_empty())
        .and_then(number)
}

/// Bytes the process made the storage layer fetch and send
/// (/proc/PID/io `read_bytes`, `write_bytes`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Io {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

pub fn parse_io(text: &[u8]) -> Io {
    let mut io = Io::default();
    for line in text.split(|&b| b == b'\n') {
        if let Some(v) = line.strip_prefix(b"read_bytes:") {
            io.read_bytes = first_number(v).unwrap_or(0);
        } else if let Some(v) = line.strip_prefix(b"write_bytes:") {
            io.write_bytes = first_number(v).unwrap_or(0);
        }
    }
    io
}

/// The cgroup /top shows for a process, from /proc/PID/cgroup: on cgroup
/// v1 (and v1 hybrid, whose `0::` line is the empty unified hierarchy) the
/// line of the `cpu` controller (`4:cpu,cpuacct:/docker/…`), else the v2
/// `0::/…` line.
pub fn parse_cgroup(text: &str) -> &str {
    let mut v2 = "";
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "cpu") {
            return path;
        }
        if id == "0" && controllers.is_empty() {
            v2 = path;
        }
    }
    v2
}

/// Reads a whole small file into `buf` (reused): open, read until a short
/// read, close. `false` when the process is gone or the file unreadable.
pub fn read_file(path: &str, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    // std puts a short path's C string on the stack: no allocation.
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    if buf.capacity() < 4096 {
        buf.reserve(4096);
    }
    loop {
        let len = buf.len();
        let cap = buf.capacity();
        buf.resize(cap, 0);
        match f.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return true;
            }
            Ok(n) => {
                buf.truncate(len + n);
                if len + n < cap {
                    // procfs fills a read up to its size: a short read
                    // means the rest is empty, saving the read of 0.
                    return true;
                }
                buf.reserve(cap);
            }
            Err(_) => {
                buf.truncate(len);
                return false;
            }
        }
    }
}

/// Calls `f` with the name of every entry of the directory at `path`
/// (without `.` and `..`), via getdents64 into `buf`: std's `read_dir`
/// allocates per entry. `false` when the directory cannot be opened.
pub fn for_each_entry(path: &str, buf: &mut Vec<u8>, mut f: impl FnMut(&[u8])) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: a valid C string; the returned fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    buf.resize(buf.capacity().max(32 * 1024), 0);
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n <= 0 {
            return n == 0;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                f(name);
            }
            off += reclen;
        }
    }
}

/// Open file descriptors of a process. Since Linux 6.2 `stat` of
/// /proc/PID/fd reports the count as its size: one syscall, where listing
/// the directory costs an open, two getdents and a close. Older kernels
/// (and an empty table) report 0: then the directory is counted.
pub fn count_fds(path: &str, buf: &mut Vec<u8>) -> u64 {
    let Ok(c) = std::ffi::CString::new(path) else {
        return 0;
    };
    // SAFETY: a zeroed stat is a valid out-buffer; the path is a C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::stat(c.as_ptr(), &mut st) } == 0 && st.st_size > 0 {
        return st.st_size as u64;
    }
    let mut n = 0;
    for_each_entry(path, buf, |_| n += 1);
    n
}

/// Whether /proc shows the host's pid namespace, whose pids are the ones
/// the kernel gives BPF: the agent is in the host's namespace (which has a
/// fixed inode, PROC_PID_INIT_INO) and /proc was mounted for it (the NSpid
/// line lists the pid in each namespace from /proc's down to the agent's:
/// one entry). In a container with its own /proc exit records could not be
/// matched to processes.
pub fn proc_is_host_pid_namespace() -> bool {
    let host =
        std::fs::read_link("/proc/self/ns/pid").is_ok_and(|l| l.as_os_str() == "pid:[4026531836]");
    host && std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|v| v.split_ascii_whitespace().count() == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parentheses_in_comm() {
        let text = b"4242 (my (odd) prog) R 1 4242 4242 0 -1 4194560 120 0 3 0 \
            250 75 0 0 20 0 3 0 987654 10485760 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, b"my (odd) prog");
        assert_eq!(s.state, b'R');
        assert_eq!(s.flags, 4194560);
        assert_eq!((s.utime, s.stime), (250, 75));
        assert_eq!(s.threads, 3);
        assert_eq!(s.start, 987654);
        assert_eq!(s.vsize, 10485760);
        assert_eq!(s.rss, 2560);
    }

    #[test]
    fn stat_of_a_kernel_thread_and_garbage() {
        let text = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 1 0 0 20 0 1 0 5 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 1 0 0 0 0 0\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.comm, b"kthreadd");
        assert_ne!(s.flags & 0x0020_0000, 0, "PF_KTHREAD");
        assert_eq!((s.vsize, s.rss), (0, 0));
        assert!(parse_stat(b"12 (truncated) S 1 2").is_none());
        assert!(parse_stat(b"").is_none());
        assert!(parse_stat(b") (").is_none());
    }

    #[test]
    fn status_uid_and_swap() {
        let text = b"Name:\tpostgres\nUmask:\t0077\nState:\tS (sleeping)\nTgid:\t812\n\
            Uid:\t105\t105\t105\t105\nGid:\t110\t110\t110\t110\nVmPeak:\t  220000 kB\n\
            VmRSS:\t   10240 kB\nVmSwap:\t     512 kB\nThreads:\t1\n";
        assert_eq!(
            parse_status(text),
            Status {
                uid: 105,
                swap: 512 * 1024
            }
        );
        // Kernel threads have no Vm lines.
        let kthread = b"Name:\tkworker/0:1\nUid:\t0\t0\t0\t0\nThreads:\t1\n";
        assert_eq!(parse_status(kthread), Status { uid: 0, swap: 0 });
    }

    #[test]
    fn io_bytes() {
        let text = b"rchar: 323934931\nwchar: 323929600\nsyscr: 632687\nsyscw: 632675\n\
            read_bytes: 4096\nwrite_bytes: 323932160\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(text),
            Io {
                read_bytes: 4096,
                write_bytes: 323932160
            }
        );
        assert_eq!(parse_io(b""), Io::default());
    }

    #[test]
    fn cgroup_v2_and_v1_hybrid() {
        assert_eq!(
            parse_cgroup("0::/system.slice/nginx.service\n"),
            "/system.slice/nginx.service"
        );
        let hybrid =
            "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n";
        assert_eq!(parse_cgroup(hybrid), "/docker/abc");
        // A v1 `cpuset` controller is not `cpu`.
        assert_eq!(parse_cgroup("5:cpuset:/x\n0::/y\n"), "/y");
        assert_eq!(parse_cgroup(""), "");
    }

    #[test]
    fn lists_and_counts_real_directories() {
        let mut buf = Vec::new();
        let mut pids = 0;
        assert!(for_each_entry("/proc", &mut buf, |n| {
            if n.iter().all(u8::is_ascii_digit) {
                pids += 1;
            }
        }));
        assert!(pids >= 1);
        let fds = count_fds("/proc/self/fd", &mut buf);
        assert!(fds >= 3, "stdin, stdout, stderr at least: {fds}");
        let mut text = Vec::new();
        assert!(read_file("/proc/self/stat", &mut text));
        let s = parse_stat(&text).unwrap();
        assert!(s.threads >= 1);
        assert!(!read_file("/proc/0/stat", &mut text));
        assert!(proc_is_host_pid_namespace(), "the tests run on the host");
    }
}
