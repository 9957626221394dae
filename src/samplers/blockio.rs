//! `blockio`: block request latency and size by operation, with operation,
//! byte and error counts over all devices, counted as /proc/diskstats
//! counts them, from one program on block_rq_complete.

use std::sync::Arc;

use linkme::distributed_slice;

use super::{options, InitResult, NoOptions, Sampler, SamplerContext, SamplerSpec, SAMPLERS};
use crate::bpf::consts::blockio::*;
use crate::bpf::{self, Banks, Bpf, Histograms};
use crate::registry::Series;

mod skel {
    include!(concat!(env!("OUT_DIR"), "/blockio.skel.rs"));
}
use skel::{BlockioSkel, BlockioSkelBuilder};

/// The sampler's config name: `[samplers.blockio]`, and its families' `sampler`.
pub(crate) const NAME: &str = "blockio";

crate::family! {
    static LATENCY: Histogram {
        name: "blockio_latency",
        unit: Nanoseconds,
        labels: ["op"],
        sampler: NAME,
        source: "block:block_rq_complete",
        help: "Time from a block request's creation to its completion: what /proc/diskstats adds up per request (iostat's await).",
    }
}
crate::family! {
    static SIZE: Histogram {
        name: "blockio_size_bytes",
        unit: Bytes,
        labels: ["op"],
        sampler: NAME,
        source: "block:block_rq_complete",
        help: "Size of block requests that carry data.",
    }
}
crate::family! {
    static OPERATIONS: Counter {
        name: "blockio_operations",
        unit: Count,
        labels: ["op"],
        sampler: NAME,
        source: "block:block_rq_complete",
        help: "Block requests completed, grouped as /proc/diskstats groups them (write includes write zeroes, discard secure erase).",
    }
}
crate::family! {
    static BYTES: Counter {
        name: "blockio_bytes",
        unit: Bytes,
        labels: ["op"],
        sampler: NAME,
        source: "block:block_rq_complete",
        help: "Bytes transferred by block requests.",
    }
}
crate::family! {
    static ERRORS: Counter {
        name: "blockio_errors",
        unit: Count,
        labels: ["op"],
        sampler: NAME,
        source: "block:block_rq_complete",
        help: "Block requests that completed with an error.",
    }
}

/// `REQ_OP_*` 0..3, the slot order of the BPF side.
const OPS: [&str; BLOCKIO_OPS] = ["read", "write", "flush", "discard"];

#[distributed_slice(SAMPLERS)]
static SPEC: SamplerSpec = SamplerSpec {
    name: NAME,
    bpf: true,
    capabilities: 0,
    validate: options::<NoOptions>,
    init,
};

struct Op {
    latency: Arc<Series>,
    size: Arc<Series>,
    operations: Arc<Series>,
    bytes: Arc<Series>,
    errors: Arc<Series>,
}

struct Blockio {
    _bpf: Bpf<BlockioSkel<'static>>,
    banks: Banks,
    histograms: Histograms,
    scratch: Vec<u64>,
    ops: Vec<Op>,
    discarded: Arc<Series>,
}

fn init(ctx: &SamplerContext<'_>) -> InitResult {
    let mut loader = ctx.bpf.loader(BlockioSkelBuilder::default);
    let counters = loader.banks("blockio_counters", BLOCKIO_BANK);
    let histograms = loader.histograms("blockio_histograms", BLOCKIO_HISTS);
    let bpf = loader.load_with(
        |open| {
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .ok_or_else(|| anyhow::anyhow!("the blockio object has no rodata"))?;
            // Bit numbers moved when the #defines became an enum
            // (IO_STAT 13 -> 8 in 6.12): read them from this kernel.
            for (member, slot) in [
                ("__RQF_IO_STAT", &mut rodata.rqf_io_stat),
                ("__RQF_FLUSH_SEQ", &mut rodata.rqf_flush_seq),
            ] {
                if let Some(bit) = bpf::enum_value(member).filter(|b| (0..32).contains(b)) {
                    *slot = 1 << bit;
                }
            }
            Ok(())
        },
        |_| Ok(()),
    )?;
    let ops = OPS
        .iter()
        .map(|op| Op {
            latency: LATENCY.series(&[op]),
            size: SIZE.series(&[op]),
            operations: OPERATIONS.series(&[op]),
            bytes: BYTES.series(&[op]),
            errors: ERRORS.series(&[op]),
        })
        .collect();
    Ok(Some(Box::new(Blockio {
        banks: bpf.banks(counters)?,
        histograms: bpf.histograms(histograms)?,
        _bpf: bpf,
        scratch: Vec::new(),
        ops,
        discarded: bpf::discarded(NAME),
    })))
}

impl Sampler for Blockio {
    fn refresh(&mut self) -> anyhow::Result<()> {
        for (i, op) in self.ops.iter().enumerate() {
            let sum = self.banks.sum(BLOCKIO_SLOT_LATENCY_SUM + i);
            self.histograms
                .store(i, &op.latency, sum, &mut self.scratch);
            // The exact byte total is the sum of the size histogram's values.
            let bytes = self.banks.sum(BLOCKIO_SLOT_BYTES + i);
            self.histograms
                .store(BLOCKIO_HIST_SIZE + i, &op.size, bytes, &mut self.scratch);
            op.operations
                .set_counter(self.banks.sum(BLOCKIO_SLOT_OPS + i));
            op.bytes.set_counter(bytes);
            op.errors
                .set_counter(self.banks.sum(BLOCKIO_SLOT_ERRORS + i));
        }
        self.discarded
            .set_counter(self.banks.sum(BLOCKIO_SLOT_DISCARDED));
        Ok(())
    }
}
