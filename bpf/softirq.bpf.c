/* Softirq time by kind, per CPU (counts come from /proc/softirqs, which
 * the kernel keeps exactly: no program needed for them). A softirq runs
 * to completion on its CPU, so the entry stamp lives in that CPU's bank. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"
#include "softirq.h"

_Static_assert(SOFTIRQ_SLOT_TIME + SOFTIRQ_KINDS <= SOFTIRQ_SLOT_START, "bank slots overlap");
_Static_assert(SOFTIRQ_SLOT_DISCARDED < SOFTIRQ_BANK, "bank overflows");
_Static_assert(SOFTIRQ_BANK % CACHELINE_U64S == 0, "bank is not whole cache lines");

SONDE_ARRAY(softirq_counters);

static __always_inline void on_entry(void)
{
	__u64 *start = bank_get(&softirq_counters, SOFTIRQ_BANK, bpf_get_smp_processor_id(),
				SOFTIRQ_SLOT_START);

	if (start)
		*start = bpf_ktime_get_ns();
}

static __always_inline void on_exit(unsigned int vec)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 *start = bank_get(&softirq_counters, SOFTIRQ_BANK, cpu, SOFTIRQ_SLOT_START), now;

	if (!start || vec >= SOFTIRQ_KINDS)
		return;
	now = bpf_ktime_get_ns();
	if (!*start || now < *start) {
		bank_add(&softirq_counters, SOFTIRQ_BANK, cpu, SOFTIRQ_SLOT_DISCARDED, 1);
		return;
	}
	bank_add(&softirq_counters, SOFTIRQ_BANK, cpu, SOFTIRQ_SLOT_TIME + vec, now - *start);
	*start = 0;
}

SONDE_HOOK(softirq_entry, softirq_entry, on_entry(), unsigned int vec)

SONDE_HOOK(softirq_exit, softirq_exit, on_exit(vec), unsigned int vec)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
