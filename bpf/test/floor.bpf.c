/* Bench-only programs: what a program on a hot hook costs before it does
 * anything useful (benches/floor.rs attaches one variant at a time and
 * times getppid). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"

SONDE_ARRAY(floor_counters);

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} floor_task SEC(".maps");

__u64 sink;

SEC("tp_btf/sys_enter")
int BPF_PROG(empty_enter)
{
	return 0;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(empty_enter_raw)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(empty_exit)
{
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(count_enter, struct pt_regs *regs, long id)
{
	array_add(&floor_counters, bpf_get_smp_processor_id() * CACHELINE_U64S + (id & 7), 1);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(ktime_enter)
{
	sink = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(task_create_enter)
{
	__u64 *v = bpf_task_storage_get(&floor_task, bpf_get_current_task_btf(), 0,
					BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (v)
		*v += 1;
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(task_lookup_enter)
{
	__u64 *v = bpf_task_storage_get(&floor_task, bpf_get_current_task_btf(), 0, 0);

	if (v)
		*v += 1;
	return 0;
}

/* Reading a task field directly (what tp_btf allows without a helper). */
SEC("tp_btf/sys_enter")
int BPF_PROG(task_field_enter)
{
	struct task_struct *t = bpf_get_current_task_btf();

	sink += t->sched_info.pcount;
	return 0;
}

/* An empty program on sched_switch, counting its runs (the bench runs
 * pinned to one CPU, so a plain increment is exact). */
__u64 runs;

#define FLOOR_EMPTY(name, tp)                                                                      \
	SEC("tp_btf/" #tp)                                                                         \
	int BPF_PROG(name)                                                                         \
	{                                                                                          \
		runs++;                                                                            \
		return 0;                                                                          \
	}

FLOOR_EMPTY(empty_switch, sched_switch)

/* Dual MIT/GPL: GPL-compatible for the kernel, MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
