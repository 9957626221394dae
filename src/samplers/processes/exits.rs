//! Exited processes, from bpf/processes.bpf.c: one record per process, when
//! its thread group's leader is freed, carrying the whole process's CPU and
//! I/O totals. The walker drains the ring buffer every second.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use libbpf_rs::{MapHandle, RingBuffer, RingBufferBuilder};

use crate::bpf::consts::processes::*;
use crate::bpf::{self, Banks, Bpf, BpfContext};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/processes.skel.rs"));
}
use skel::types::process_exit;
use skel::{ProcessesSkel, ProcessesSkelBuilder};

/// One exited process.
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

impl From<&process_exit> for Exit {
    fn from(r: &process_exit) -> Exit {
        Exit {
            tgid: r.tgid,
            flags: r.flags,
            start_ns: r.start_boottime,
            runtime: r.runtime,
            utime: r.utime,
            stime: r.stime,
            read_bytes: r.read_bytes,
            write_bytes: r.write_bytes,
            comm: r.comm.map(|c| c as u8),
        }
    }
}

impl Exit {
    /// Decodes a ring buffer record: the C struct, as the skeleton's
    /// generated type lays it out.
    pub fn parse(b: &[u8]) -> Option<Exit> {
        if b.len() < std::mem::size_of::<process_exit>() {
            return None;
        }
        // SAFETY: `b` holds at least one `process_exit`, a repr(C) struct
        // of integers (every bit pattern valid); read_unaligned copies it
        // whatever the buffer's alignment.
        let r: process_exit = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
        Some(Exit::from(&r))
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

/// The hook of the exit program, as `/samplers` names it.
pub const HOOK: &str = "sched_process_free";

/// The loaded program; its ring buffer is read through [`Reader`].
pub struct Exits {
    _bpf: Bpf<ProcessesSkel<'static>>,
    ring: MapHandle,
    banks: Banks,
    discarded: Arc<Series>,
}

impl Exits {
    /// Loads the exit program through the sampler's context, which reports
    /// it; fails (with why) when it does not attach.
    pub fn load(ctx: &BpfContext) -> anyhow::Result<Exits> {
        let mut loader = ctx.loader(ProcessesSkelBuilder::default);
        let counters = loader.banks("processes_counters", PROCESSES_BANK);
        let ring = loader.map("process_exits");
        let bpf = loader.load()?;
        if !bpf.attached(HOOK) {
            anyhow::bail!(
                "{}",
                bpf.why_not(HOOK)
                    .unwrap_or("sched_process_free did not attach")
            );
        }
        Ok(Exits {
            banks: bpf.banks(counters)?,
            ring: bpf.map(ring)?,
            _bpf: bpf,
            discarded: bpf::discarded(ctx.sampler),
        })
    }

    /// An owned handle on the ring buffer map, for the walker's thread.
    pub fn ring(&self) -> anyhow::Result<MapHandle> {
        Ok(MapHandle::try_from(&self.ring)?)
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
    fn decodes_records_and_splits_cpu() {
        let mut r = process_exit {
            tgid: 4242,
            start_boottime: 5_000_000_000,
            runtime: 1_000_000_000,
            utime: 300,
            stime: 100,
            read_bytes: 4096,
            write_bytes: 8192,
            ..Default::default()
        };
        for (c, b) in r.comm.iter_mut().zip(b"sondeburn") {
            *c = *b as _;
        }
        // The record as the ring buffer hands it over: its bytes.
        let size = std::mem::size_of::<process_exit>();
        // SAFETY: viewing a live repr(C) value as `size` bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts((&r as *const process_exit).cast::<u8>(), size) };
        let e = Exit::parse(bytes).unwrap();
        assert_eq!(e.tgid, 4242);
        assert_eq!(e.start_ns, 5_000_000_000);
        assert_eq!(e.comm(), b"sondeburn");
        assert_eq!(e.cpu(), (750_000_000, 250_000_000));
        assert_eq!((e.read_bytes, e.write_bytes), (4096, 8192));
        assert!(!e.kernel_thread());
        assert!(Exit::parse(&bytes[..size - 1]).is_none());
        let idle = Exit {
            utime: 0,
            stime: 0,
            ..e
        };
        assert_eq!(idle.cpu(), (1_000_000_000, 0));
    }
}
