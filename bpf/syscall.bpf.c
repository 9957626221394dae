/* Syscall counts and latency by operation class (read, write, poll, ...).
 * sys_enter stamps the task, sys_exit buckets the delta; counts are the
 * histogram totals, so each syscall costs one bucket add and one sum add. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"
#include "syscall.h"

struct start {
	__u64 ts;
	__u32 op;
};

/* Per-task start stamp: no pid-indexed array, freed with the task. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct start);
} syscall_start SEC(".maps");

/* Syscall number -> op class, written by user space before attach. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, SYSCALL_MAX_NR);
} syscall_ops SEC(".maps");

SONDE_ARRAY(syscall_counters);
SONDE_ARRAY(syscall_latency);

static __always_inline void on_enter(long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct start *s;
	__u32 nr = id, *op;

	s = bpf_task_storage_get(&syscall_start, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return;
	op = bpf_map_lookup_elem(&syscall_ops, &nr);
	s->op = op ? *op : 0;
	s->ts = bpf_ktime_get_ns();
}

static __always_inline void on_exit(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct start *s;
	__u64 now, start;
	__u32 cpu, op;

	s = bpf_task_storage_get(&syscall_start, task, 0, 0);
	if (!s || !s->ts)
		return;
	now = bpf_ktime_get_ns();
	start = s->ts;
	op = s->op;
	s->ts = 0;
	cpu = bpf_get_smp_processor_id();
	if (now < start || op >= SYSCALL_OPS) {
		array_add(&syscall_counters, cpu * SYSCALL_BANK + SYSCALL_SLOT_DISCARDED, 1);
		return;
	}
	array_add(&syscall_latency,
		  (cpu * SYSCALL_OPS + op) * HISTOGRAM_BUCKETS + h2_index(now - start), 1);
	array_add(&syscall_counters, cpu * SYSCALL_BANK + SYSCALL_SLOT_SUM + op, now - start);
}

/* Counts-only mode (latency = false): one program, no clock, no task state. */
static __always_inline void on_enter_count(long id)
{
	__u32 nr = id, *op = bpf_map_lookup_elem(&syscall_ops, &nr);

	array_add(&syscall_counters,
		  bpf_get_smp_processor_id() * SYSCALL_BANK + SYSCALL_SLOT_COUNT + (op ? *op : 0),
		  1);
}

SONDE_HOOK(sys_enter_count, sys_enter, on_enter_count(id), struct pt_regs *regs, long id)

SONDE_HOOK(sys_enter, sys_enter, on_enter(id), struct pt_regs *regs, long id)

SONDE_HOOK(sys_exit, sys_exit, on_exit(), struct pt_regs *regs, long ret)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
