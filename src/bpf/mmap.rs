//! Read-only mmap views of `BPF_F_MMAPABLE` arrays of u64: reading a
//! counter is a memory load, not a syscall.

use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use libbpf_rs::{MapCore as _, Object};

use super::consts::sonde::HISTOGRAM_BUCKETS;
use crate::registry::Series;

/// A shared, read-only mapping of a BPF array map of u64 values. The map's
/// fd is only borrowed (libbpf owns and closes it); the mapping keeps the
/// map's memory alive on its own until dropped.
pub struct MmapU64 {
    ptr: NonNull<AtomicU64>,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is plain shared memory, read through atomics.
unsafe impl Send for MmapU64 {}
unsafe impl Sync for MmapU64 {}

impl MmapU64 {
    pub fn new(obj: &Object, name: &str) -> anyhow::Result<Self> {
        let map = obj
            .maps()
            .find(|m| m.name() == name)
            .with_context(|| format!("BPF object has no map `{name}`"))?;
        Self::map(&map, name)
    }

    /// Maps any mmap'able u64 array map (a skeleton's, or a standalone one).
    pub fn map(map: &impl libbpf_rs::MapCore, name: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            map.value_size() == 8,
            "map `{name}` does not hold u64 values"
        );
        let len = map.max_entries() as usize;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (len * 8).div_ceil(page) * page;
        // SAFETY: mapping a valid fd read-only and shared; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot mmap BPF map `{name}`"));
        }
        Ok(MmapU64 {
            ptr: NonNull::new(ptr.cast()).context("mmap returned null")?,
            len,
            bytes,
        })
    }

    /// The values; the kernel updates them concurrently, hence atomics.
    pub fn values(&self) -> &[AtomicU64] {
        // SAFETY: the mapping covers `len` u64s and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for MmapU64 {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// Per-CPU banks of `width` u64 counters: `index = cpu * width + slot`.
pub struct Banks {
    mem: MmapU64,
    cpus: usize,
    width: usize,
}

impl Banks {
    pub fn new(obj: &Object, name: &str, cpus: usize, width: usize) -> anyhow::Result<Self> {
        let mem = MmapU64::new(obj, name)?;
        anyhow::ensure!(
            mem.len >= cpus * width,
            "map `{name}` is smaller than {cpus} banks of {width}"
        );
        Ok(Banks { mem, cpus, width })
    }

    /// The slot summed over CPUs.
    pub fn sum(&self, slot: usize) -> u64 {
        let v = self.mem.values();
        (0..self.cpus)
            .map(|c| v[c * self.width + slot].load(Ordering::Relaxed))
            .sum()
    }

    /// The slot on one CPU.
    pub fn get(&self, cpu: usize, slot: usize) -> u64 {
        self.mem.values()[cpu * self.width + slot].load(Ordering::Relaxed)
    }

    pub fn cpus(&self) -> usize {
        self.cpus
    }
}

/// Per-CPU H2 histograms, `count` per CPU:
/// `index = (cpu * count + h) * HISTOGRAM_BUCKETS + bucket`.
pub struct Histograms {
    mem: MmapU64,
    cpus: usize,
    count: usize,
}

impl Histograms {
    pub fn new(obj: &Object, name: &str, cpus: usize, count: usize) -> anyhow::Result<Self> {
        Self::from_mmap(MmapU64::new(obj, name)?, name, cpus, count)
    }

    pub fn from_mmap(mem: MmapU64, name: &str, cpus: usize, count: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            mem.len >= cpus * count * HISTOGRAM_BUCKETS,
            "map `{name}` is smaller than {cpus} x {count} histograms"
        );
        Ok(Histograms { mem, cpus, count })
    }

    /// Sums histogram `h` over CPUs into `scratch` and stores it, with its
    /// value sum, in `series`; returns the number of observations.
    pub fn store(&self, h: usize, series: &Series, sum: u64, scratch: &mut Vec<u64>) -> u64 {
        scratch.resize(HISTOGRAM_BUCKETS, 0);
        self.sum_into(h, scratch);
        series.set_histogram(scratch, sum);
        scratch.iter().sum()
    }

    /// Histogram `h` summed over CPUs into `out` (HISTOGRAM_BUCKETS long).
    pub fn sum_into(&self, h: usize, out: &mut [u64]) {
        out.iter_mut().for_each(|b| *b = 0);
        let v = self.mem.values();
        for cpu in 0..self.cpus {
            let base = (cpu * self.count + h) * HISTOGRAM_BUCKETS;
            for (o, b) in out.iter_mut().zip(&v[base..base + HISTOGRAM_BUCKETS]) {
                *o += b.load(Ordering::Relaxed);
            }
        }
    }
}
