/* Task migrations between CPUs and TLB flushes by reason. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"
#include "cpu.h"

SONDE_ARRAY(cpu_counters);

static __always_inline void on_migrate(void)
{
	array_add(&cpu_counters, bpf_get_smp_processor_id() * CPU_BANK + CPU_SLOT_MIGRATIONS, 1);
}

static __always_inline void on_tlb_flush(int reason)
{
	__u32 r = reason;

	/* Reasons past the known ones share the last slot ("other"). */
	if (r >= CPU_TLB_REASONS - 1)
		r = CPU_TLB_REASONS - 1;
	array_add(&cpu_counters, bpf_get_smp_processor_id() * CPU_BANK + CPU_SLOT_TLB + r, 1);
}

SEC("tp_btf/sched_migrate_task")
int BPF_PROG(sched_migrate_task_btf, struct task_struct *p, int dest_cpu)
{
	on_migrate();
	return 0;
}

SEC("raw_tp/sched_migrate_task")
int BPF_PROG(sched_migrate_task_raw, struct task_struct *p, int dest_cpu)
{
	on_migrate();
	return 0;
}

SEC("tp_btf/tlb_flush")
int BPF_PROG(tlb_flush_btf, int reason, unsigned long pages)
{
	on_tlb_flush(reason);
	return 0;
}

SEC("raw_tp/tlb_flush")
int BPF_PROG(tlb_flush_raw, int reason, unsigned long pages)
{
	on_tlb_flush(reason);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
