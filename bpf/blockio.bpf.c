/* Block request latency (issue -> complete) and size by operation, with
 * operation, byte and error counts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sonde.h"
#include "blockio.h"

#define REQ_OP_MASK 0xff

/* Issue stamp per request; a request pointer is the only key there is. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, BLOCKIO_INFLIGHT);
} blockio_start SEC(".maps");

SONDE_ARRAY(blockio_counters);
SONDE_ARRAY(blockio_histograms);

/* read, write, flush, discard are REQ_OP 0..3; others are not reported. */
static __always_inline int op_of(struct request *rq)
{
	__u32 op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;

	return op < BLOCKIO_OPS ? (int)op : -1;
}

static __always_inline void on_issue(struct request *rq)
{
	__u64 key = (__u64)rq, now = bpf_ktime_get_ns();

	if (op_of(rq) < 0)
		return;
	if (bpf_map_update_elem(&blockio_start, &key, &now, BPF_ANY))
		array_add(&blockio_counters,
			  bpf_get_smp_processor_id() * BLOCKIO_BANK + BLOCKIO_SLOT_DISCARDED, 1);
}

static __always_inline void on_complete(struct request *rq, int error, unsigned int nr_bytes)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 key = (__u64)rq, *start, now;
	int op = op_of(rq);

	if (op < 0)
		return;
	array_add(&blockio_counters, cpu * BLOCKIO_BANK + BLOCKIO_SLOT_BYTES + op, nr_bytes);
	if (error)
		array_add(&blockio_counters, cpu * BLOCKIO_BANK + BLOCKIO_SLOT_ERRORS + op, 1);
	/* A request may complete in parts; the first completion ends its
	 * latency, counts the operation and its size (__data_len still holds
	 * the whole request then); later parts only add bytes. */
	start = bpf_map_lookup_elem(&blockio_start, &key);
	if (!start)
		return;
	now = bpf_ktime_get_ns();
	array_add(&blockio_counters, cpu * BLOCKIO_BANK + BLOCKIO_SLOT_OPS + op, 1);
	array_add(&blockio_histograms,
		  (cpu * BLOCKIO_HISTS + BLOCKIO_HIST_SIZE + op) * HISTOGRAM_BUCKETS +
		      h2_index(BPF_CORE_READ(rq, __data_len)),
		  1);
	if (now >= *start) {
		array_add(&blockio_histograms,
			  (cpu * BLOCKIO_HISTS + op) * HISTOGRAM_BUCKETS + h2_index(now - *start),
			  1);
		array_add(&blockio_counters, cpu * BLOCKIO_BANK + BLOCKIO_SLOT_LATENCY_SUM + op,
			  now - *start);
	} else {
		array_add(&blockio_counters, cpu * BLOCKIO_BANK + BLOCKIO_SLOT_DISCARDED, 1);
	}
	bpf_map_delete_elem(&blockio_start, &key);
}

SONDE_HOOK(block_rq_issue, block_rq_issue, on_issue(rq), struct request *rq)

SONDE_HOOK(block_rq_complete, block_rq_complete, on_complete(rq, error, nr_bytes),
	   struct request *rq, blk_status_t error, unsigned int nr_bytes)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
