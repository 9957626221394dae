/* Block requests by operation: completions, bytes, errors, latency and
 * size, counted as /proc/diskstats counts them, from one program on
 * block_rq_complete and no per-request map.
 *
 * The block layer stamps every accounted request when it is created
 * (rq->start_time_ns, CLOCK_MONOTONIC), and /proc/diskstats adds up
 * `completion - start_time_ns` per request: our latency is that same
 * quantity (what iostat calls await), so its sum matches the kernel's. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sonde.h"
#include "blockio.h"

#define REQ_OP_MASK 0xff
#define REQ_OP_FLUSH 2
#define REQ_OP_DISCARD 3
#define REQ_OP_SECURE_ERASE 5
#define REQ_OP_DRV_IN 34
#define OP_READ 0
#define OP_WRITE 1
#define OP_FLUSH 2
#define OP_DISCARD 3

_Static_assert(BLOCKIO_SLOT_LATENCY_SUM + BLOCKIO_OPS <= BLOCKIO_SLOT_DISCARDED, "slots overlap");
_Static_assert(BLOCKIO_SLOT_DISCARDED < BLOCKIO_BANK, "bank overflows");
_Static_assert(BLOCKIO_BANK % CACHELINE_U64S == 0, "bank is not whole cache lines");

/* rq_flags bits, set by the loader from the running kernel's BTF: the
 * __RQF_* enumerators (6.12 has them in an enum no CO-RE relocation can
 * name, 6.18 in enum rqf_flags), else these #define values of older
 * kernels (6.1), which BTF does not carry. */
const volatile __u32 rqf_io_stat = 1 << 13;
const volatile __u32 rqf_flush_seq = 1 << 4;

SONDE_ARRAY(blockio_counters);
SONDE_ARRAY(blockio_histograms);

static __always_inline void count(__u32 cpu, __u32 slot, __u64 v)
{
	bank_add(&blockio_counters, BLOCKIO_BANK, cpu, slot, v);
}

/* The kernel's grouping of request operations for /proc/diskstats
 * (op_stat_group): discards and secure erases are discards, flushes are
 * flushes, every other op is a read or a write by its direction bit
 * (write zeroes and zone appends are writes). Driver passthrough is not
 * accounted. */
static __always_inline int op_group(__u32 op)
{
	if (op == REQ_OP_FLUSH)
		return OP_FLUSH;
	if (op == REQ_OP_DISCARD || op == REQ_OP_SECURE_ERASE)
		return OP_DISCARD;
	if (op >= REQ_OP_DRV_IN)
		return -1;
	return op & 1 ? OP_WRITE : OP_READ;
}

static __always_inline void observe(__u32 cpu, __u32 h, __u64 v)
{
	hist_add(&blockio_histograms, BLOCKIO_HISTS, cpu, h, v);
}

/* A request completes in one call here, or in parts (a driver's partial
 * completion); the call that covers what is left ends its data. Like the
 * kernel: bytes count at every part of a request with I/O statistics, the
 * operation and its time at the request's end, except while a data
 * request is inside a flush sequence (it ends later, with no bytes left)
 * and for the flush request itself, which counts as a flush. */
static __always_inline void on_complete(bool btf, struct request *rq, int error,
					unsigned int nr_bytes)
{
	__u32 cpu = bpf_get_smp_processor_id();
	int op = op_group(SONDE_READ(btf, rq, cmd_flags) & REQ_OP_MASK);
	__u32 flags = SONDE_READ(btf, rq, rq_flags), left = SONDE_READ(btf, rq, __data_len);
	__u64 start, now;

	if (op < 0)
		return;
	if (op != OP_FLUSH) {
		if (!(flags & rqf_io_stat))
			return;
		count(cpu, BLOCKIO_SLOT_BYTES + op, nr_bytes);
		if (nr_bytes < left)
			return;
		/* The request's data ends here: all of it in the usual case. */
		if (nr_bytes)
			observe(cpu, BLOCKIO_HIST_SIZE + op, nr_bytes);
		if (flags & rqf_flush_seq)
			return;
	}
	count(cpu, BLOCKIO_SLOT_OPS + op, 1);
	if (error)
		count(cpu, BLOCKIO_SLOT_ERRORS + op, 1);
	start = SONDE_READ(btf, rq, start_time_ns);
	now = bpf_ktime_get_ns();
	/* A request the kernel did not stamp is discarded like stamps out of
	 * order (one test, as observe_span's would be a second). */
	if (!start || now < start) {
		count(cpu, BLOCKIO_SLOT_DISCARDED, 1);
		return;
	}
	observe(cpu, op, now - start);
	count(cpu, BLOCKIO_SLOT_LATENCY_SUM + op, now - start);
}

SONDE_HOOK(block_rq_complete, block_rq_complete, on_complete(btf, rq, error, nr_bytes),
	   struct request *rq, blk_status_t error, unsigned int nr_bytes)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
