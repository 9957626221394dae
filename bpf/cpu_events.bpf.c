/* Task migrations between CPUs and TLB flushes by reason. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"
#include "cpu_events.h"

SONDE_ARRAY(cpu_counters);

static __always_inline void on_migrate(void)
{
	bank_add(&cpu_counters, CPU_BANK, bpf_get_smp_processor_id(), CPU_SLOT_MIGRATIONS, 1);
}

static __always_inline void on_tlb_flush(int reason)
{
	__u32 r = reason;

	/* Reasons past the known ones share the last slot ("other"). */
	if (r >= CPU_TLB_REASONS - 1)
		r = CPU_TLB_REASONS - 1;
	bank_add(&cpu_counters, CPU_BANK, bpf_get_smp_processor_id(), CPU_SLOT_TLB + r, 1);
}

SONDE_HOOK(sched_migrate_task, sched_migrate_task, on_migrate(), struct task_struct *p,
	   int dest_cpu)

SONDE_HOOK(tlb_flush, tlb_flush, on_tlb_flush(reason), int reason, unsigned long pages)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
