/* Run-queue latency (wakeup or preemption -> on CPU), off-CPU time and
 * on-CPU slice length, plus voluntary/involuntary context switches. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sonde.h"
#include "scheduler.h"

#define TASK_RUNNING 0

struct stamps {
	__u64 enqueued;
	__u64 offcpu;
	__u64 oncpu;
};

/* tp_btf: per-task storage, freed with the task. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct stamps);
} sched_tasks SEC(".maps");

/* raw_tp: arguments are not BTF pointers, so key a bounded hash by pid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct stamps);
	__uint(max_entries, SCHED_RAW_TASKS);
} sched_tasks_raw SEC(".maps");

SONDE_ARRAY(sched_counters);
SONDE_ARRAY(sched_latency);

static __always_inline void observe(__u32 cpu, __u32 h, __u64 start, __u64 now)
{
	if (!start)
		return;
	if (now < start) {
		array_add(&sched_counters, cpu * SCHED_BANK + SCHED_SLOT_DISCARDED, 1);
		return;
	}
	array_add(&sched_latency,
		  (cpu * SCHED_HISTS + h) * HISTOGRAM_BUCKETS + h2_index(now - start), 1);
	array_add(&sched_counters, cpu * SCHED_BANK + SCHED_SLOT_SUM + h, now - start);
}

static __always_inline void on_wakeup(struct stamps *s)
{
	if (s)
		s->enqueued = bpf_ktime_get_ns();
}

static __always_inline void on_switch(bool preempt, __u32 prev_pid, struct stamps *prev,
				      __u32 next_pid, struct stamps *next, unsigned int prev_state)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u64 now = bpf_ktime_get_ns();
	bool involuntary = preempt || prev_state == TASK_RUNNING;

	/* The idle task's switches are not context switches of work. */
	if (prev_pid)
		array_add(&sched_counters,
			  cpu * SCHED_BANK +
			      (involuntary ? SCHED_SLOT_INVOLUNTARY : SCHED_SLOT_VOLUNTARY),
			  1);
	if (prev_pid && prev) {
		observe(cpu, SCHED_HIST_RUNNING, prev->oncpu, now);
		prev->oncpu = 0;
		prev->offcpu = now;
		/* Preempted: it waits on the run queue from now. */
		prev->enqueued = involuntary ? now : 0;
	}
	if (next_pid && next) {
		observe(cpu, SCHED_HIST_RUNQUEUE, next->enqueued, now);
		observe(cpu, SCHED_HIST_OFFCPU, next->offcpu, now);
		next->enqueued = 0;
		next->offcpu = 0;
		next->oncpu = now;
	}
}

static __always_inline struct stamps *task_btf(struct task_struct *t)
{
	return bpf_task_storage_get(&sched_tasks, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
}

static __always_inline struct stamps *task_raw(__u32 pid)
{
	struct stamps *s, zero = {};

	if (!pid)
		return 0;
	s = bpf_map_lookup_elem(&sched_tasks_raw, &pid);
	if (s)
		return s;
	bpf_map_update_elem(&sched_tasks_raw, &pid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sched_tasks_raw, &pid);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup_btf, struct task_struct *p)
{
	on_wakeup(task_btf(p));
	return 0;
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(sched_wakeup_raw, struct task_struct *p)
{
	on_wakeup(task_raw(BPF_CORE_READ(p, pid)));
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_btf, struct task_struct *p)
{
	on_wakeup(task_btf(p));
	return 0;
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new_raw, struct task_struct *p)
{
	on_wakeup(task_raw(BPF_CORE_READ(p, pid)));
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 prev_pid = prev->pid, next_pid = next->pid;

	on_switch(preempt, prev_pid, prev_pid ? task_btf(prev) : 0, next_pid,
		  next_pid ? task_btf(next) : 0, prev_state);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 prev_pid = BPF_CORE_READ(prev, pid), next_pid = BPF_CORE_READ(next, pid);
	struct stamps *p = task_raw(prev_pid);

	on_switch(preempt, prev_pid, p, next_pid, task_raw(next_pid), prev_state);
	return 0;
}

/* The raw_tp twin must forget tasks that exit, or its hash fills up. */
SEC("raw_tp/sched_process_free")
int BPF_PROG(sched_process_free_raw, struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, pid);

	bpf_map_delete_elem(&sched_tasks_raw, &pid);
	return 0;
}

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
