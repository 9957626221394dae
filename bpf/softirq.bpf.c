/* Softirq counts and time by kind, per CPU. A softirq runs to completion
 * on its CPU, so the entry stamp lives in that CPU's bank. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"
#include "softirq.h"

SONDE_ARRAY(softirq_counters);

static __always_inline void on_entry(unsigned int vec)
{
	__u32 idx = bpf_get_smp_processor_id() * SOFTIRQ_BANK + SOFTIRQ_SLOT_START;
	__u64 *start = bpf_map_lookup_elem(&softirq_counters, &idx);

	if (start)
		*start = bpf_ktime_get_ns();
}

static __always_inline void on_exit(unsigned int vec)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 idx = cpu * SOFTIRQ_BANK + SOFTIRQ_SLOT_START;
	__u64 *start = bpf_map_lookup_elem(&softirq_counters, &idx), now;

	if (!start || vec >= SOFTIRQ_KINDS)
		return;
	now = bpf_ktime_get_ns();
	array_add(&softirq_counters, cpu * SOFTIRQ_BANK + SOFTIRQ_SLOT_COUNT + vec, 1);
	if (!*start || now < *start) {
		array_add(&softirq_counters, cpu * SOFTIRQ_BANK + SOFTIRQ_SLOT_DISCARDED, 1);
		return;
	}
	array_add(&softirq_counters, cpu * SOFTIRQ_BANK + SOFTIRQ_SLOT_TIME + vec, now - *start);
	*start = 0;
}

SONDE_HOOK(softirq_entry, softirq_entry, on_entry(vec), unsigned int vec)

SONDE_HOOK(softirq_exit, softirq_exit, on_exit(vec), unsigned int vec)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
