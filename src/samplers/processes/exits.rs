//! Exited processes, from bpf/processes.bpf.c: one record per process, when
//! its thread group's leader is freed, carrying the whole process's CPU and
//! I/O totals. The walker drains the ring buffer every second.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use libbpf_rs::{MapHandle, RingBuffer, RingBufferBuilder};

use crate::bpf::consts::processes::*;
use crate::bpf::{self, Banks, Bpf, BpfInfo, BpfOptions, HookMode, Loader};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/processes.skel.rs"));
}
use skel::{ProcessesSkel, ProcessesSkelBuilder};

/// One exited process (`struct process_exit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub tgid: u32,
    pub flags: u32,
    /// `start_boottime`, ns: divided by the tick it is /proc's `starttime`.
    pub start_ns: u64,
    /// CPU time of all its threads (`sum_exec_runtime`), ns.
    pub runtime: u64,
    /// Tick-sampled user and system time, ns: only their ratio is used.
    pub utime: u64,
    pub stime: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub comm: [u8; 16],
}

pub const RECORD_BYTES: usize = 72;

impl Exit {
    /// Decodes a record (native endian, the C struct's layout).
    pub fn parse(b: &[u8]) -> Option<Exit> {
        if b.len() < RECORD_BYTES {
            return None;
        }
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        Some(Exit {
            tgid: u32_at(0),
            flags: u32_at(4),
            start_ns: u64_at(8),
            runtime: u64_at(16),
            utime: u64_at(24),
            stime: u64_at(32),
            read_bytes: u64_at(40),
            write_bytes: u64_at(48),
            comm: b[56..72].try_into().unwrap(),
        })
    }

    pub fn comm(&self) -> &[u8] {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(16);
        &self.comm[..end]
    }

    pub fn kernel_thread(&self) -> bool {
        self.flags as usize & PROCESSES_PF_KTHREAD != 0
    }

    /// (user, system) ns: the exact runtime split in the ratio of the
    /// sampled times, as the kernel's cputime_adjust splits it for /proc.
    pub fn cpu(&self) -> (u64, u64) {
        let (u, s, rt) = (self.utime as u128, self.stime as u128, self.runtime as u128);
        if s == 0 {
            return (self.runtime, 0);
        }
        if u == 0 {
            return (0, self.runtime);
        }
        let user = (rt * u / (u + s)) as u64;
        (user, self.runtime - user)
    }
}

/// The loaded program; its ring buffer is read through [`Reader`].
pub struct Exits {
    bpf: Bpf<ProcessesSkel<'static>>,
    banks: Banks,
    discarded: Arc<Series>,
}

impl Exits {
    pub fn load(hook: HookMode) -> anyhow::Result<Exits> {
        let options = BpfOptions {
            hook,
            disable: Vec::new(),
        };
        let bpf = Loader::new("processes", ProcessesSkelBuilder::default, &options)
            .banks("processes_counters", PROCESSES_BANK)
            .load()?;
        anyhow::ensure!(
            bpf.attached("sched_process_free"),
            "{}",
            bpf.info
                .programs
                .iter()
                .find_map(|p| p.reason.clone())
                .unwrap_or_else(|| "sched_process_free did not attach".into())
        );
        let banks = bpf.banks("processes_counters")?;
        Ok(Exits {
            bpf,
            banks,
            discarded: bpf::discarded("processes"),
        })
    }

    /// An owned handle on the ring buffer map, for the walker's thread.
    pub fn ring(&self) -> anyhow::Result<MapHandle> {
        Ok(MapHandle::try_from(&self.bpf.skel.maps.process_exits)?)
    }

    pub fn info(&self) -> &BpfInfo {
        &self.bpf.info
    }

    /// Publishes the records that did not fit in the ring buffer.
    pub fn refresh(&self) {
        self.discarded
            .set_counter(self.banks.sum(PROCESSES_SLOT_LOST));
    }
}

/// The consuming side of the ring buffer, owned by the walker's thread.
pub struct Reader {
    ring: RingBuffer<'static>,
    got: Rc<RefCell<Vec<Exit>>>,
    _map: MapHandle,
}

impl Reader {
    pub fn new(map: MapHandle) -> anyhow::Result<Reader> {
        let got = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&got);
        let mut b = RingBufferBuilder::new();
        b.add(&map, move |data: &[u8]| {
            if let Some(e) = Exit::parse(data) {
                sink.borrow_mut().push(e);
            }
            0
        })?;
        let ring = b.build()?;
        Ok(Reader {
            ring,
            got,
            _map: map,
        })
    }

    /// Every record written since the last call, into `out` (cleared).
    pub fn drain(&mut self, out: &mut Vec<Exit>) {
        out.clear();
        if let Err(e) = self.ring.consume() {
            tracing::warn!(error = %e, "processes: cannot read the exit ring buffer");
        }
        std::mem::swap(out, &mut self.got.borrow_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_splits_cpu() {
        let mut b = Vec::new();
        b.extend_from_slice(&4242u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for v in [5_000_000_000u64, 1_000_000_000, 300, 100, 4096, 8192] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(b"sondeburn\0\0\0\0\0\0\0");
        let e = Exit::parse(&b).unwrap();
        assert_eq!(e.tgid, 4242);
        assert_eq!(e.comm(), b"sondeburn");
        assert_eq!(e.cpu(), (750_000_000, 250_000_000));
        assert_eq!((e.read_bytes, e.write_bytes), (4096, 8192));
        assert!(!e.kernel_thread());
        assert!(Exit::parse(&b[..40]).is_none());
        let idle = Exit {
            utime: 0,
            stime: 0,
            ..e
        };
        assert_eq!(idle.cpu(), (1_000_000_000, 0));
    }
}
