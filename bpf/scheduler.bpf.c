/* Run-queue latency and on-CPU slice length, voluntary and involuntary
 * context switches, and with `offcpu` the time tasks spend off CPU: one
 * program, on sched_switch only.
 *
 * The kernel already stamps what we need (CONFIG_SCHED_INFO, which
 * delay accounting and schedstats select): sched_info.last_queued (when
 * the task was put on the run queue it now leaves: woken or preempted)
 * and last_arrival (when it last got a CPU), in rq->clock time, which
 * __schedule() updated just before this tracepoint. So there is no
 * sched_wakeup program, no clock read and, by default, no per-task state;
 * off-CPU time needs the departure stamp we keep per task (two task
 * storage lookups per switch: ~70 ns more per switch on our VM).
 *
 * The run queue is reached through the task (se.cfs_rq->rq, there for
 * every task class with CONFIG_FAIR_GROUP_SCHED, which distributions set):
 * per-CPU `runqueues` is not a usable ksym without CONFIG_KALLSYMS_ALL. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sonde.h"
#include "scheduler.h"
#include "cgroup.h"

#define TASK_RUNNING 0

_Static_assert(SCHED_SLOT_SUM + SCHED_HISTS <= SCHED_SLOT_VOLUNTARY, "bank slots overlap");
_Static_assert(SCHED_SLOT_DISCARDED < SCHED_SLOT_CGROUP, "bank slots overlap");
_Static_assert(SCHED_SLOT_CGROUP < SCHED_SLOT_CG_GEN, "bank slots overlap");
_Static_assert(SCHED_SLOT_CG_GEN < SCHED_SLOT_GEN, "bank slots overlap");
_Static_assert(SCHED_SLOT_GEN < SCHED_BANK, "bank overflows");
_Static_assert(SCHED_BANK % CACHELINE_U64S == 0, "bank is not whole cache lines");

/* Set by the loader before load; the verifier prunes what it turns off. */
const volatile bool offcpu = false;
/* Per-cgroup run-queue wait, on-CPU time and switches. */
const volatile bool cgroups = false;

/* What we remember of a task when it leaves its CPU (`offcpu`). */
struct departure {
	__u64 at; /* rq clock */
};

/* tp_btf: per-task storage, freed with the task. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct departure);
} sched_tasks SEC(".maps");

/* raw_tp: arguments are not BTF pointers, so key a bounded hash by pid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct departure);
	__uint(max_entries, SCHED_RAW_TASKS);
} sched_tasks_raw SEC(".maps");

SONDE_ARRAY(sched_counters);
SONDE_ARRAY(sched_latency);
/* cpus x SCHED_CGROUPS x SCHED_CG_FIELDS (1 entry with cgroups off). */
SONDE_ARRAY(sched_cgroups);

/* Cgroup id -> slot, written by the cgroup sampler; a cgroup it does not
 * export (filtered, too young, over max_cgroups) has no slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u32);
	__uint(max_entries, SCHED_CGROUPS);
} sched_cgroup_ids SEC(".maps");

static __always_inline void count(__u32 cpu, __u32 slot)
{
	bank_add(&sched_counters, SCHED_BANK, cpu, slot, 1);
}

static __always_inline void observe(__u32 cpu, __u32 h, __u64 start, __u64 end)
{
	observe_span(&sched_latency, SCHED_HISTS, &sched_counters, SCHED_BANK, cpu, h,
		     SCHED_SLOT_SUM + h, SCHED_SLOT_DISCARDED, start, end);
}

static __always_inline struct departure *stamps_raw(__u32 pid, bool create)
{
	struct departure *d, zero = {};

	d = bpf_map_lookup_elem(&sched_tasks_raw, &pid);
	if (d || !create)
		return d;
	bpf_map_update_elem(&sched_tasks_raw, &pid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&sched_tasks_raw, &pid);
}

static __always_inline struct departure *stamps(bool btf, struct task_struct *t, __u32 pid,
						bool create)
{
	if (btf)
		return bpf_task_storage_get(&sched_tasks, t, 0,
					    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	return stamps_raw(pid, create);
}

static __always_inline void cgroup_add(__u32 cpu, __u32 slot, __u32 field, __u64 v)
{
	/* cpu x slot x field: the same index as a bank of SCHED_CGROUPS *
	 * SCHED_CG_FIELDS, in the form that compiles to the fewest
	 * instructions here (measured with bpftool prog dump xlated). */
	array_add(&sched_cgroups, (cpu * SCHED_CGROUPS + slot) * SCHED_CG_FIELDS + field, v);
}

/* Attributes the switch to cgroups: prev's slot is the one cached when it
 * was switched in on this CPU (one hash lookup per switch, for next),
 * unless the slots changed since. A task moved to another cgroup while
 * running is attributed to its new cgroup from its next switch in. */
static __always_inline void cgroup_switch(bool btf, __u32 cpu, __u32 prev_pid, __u32 next_pid,
					  struct task_struct *next, bool involuntary, __u64 arrived,
					  __u64 queued, __u64 now)
{
	__u64 *cur = bank_get(&sched_counters, SCHED_BANK, cpu, SCHED_SLOT_CGROUP), id;
	__u64 *gen = bank_get(&sched_counters, SCHED_BANK, cpu, SCHED_SLOT_CG_GEN);
	__u64 *now_gen = bank_get(&sched_counters, SCHED_BANK, 0, SCHED_SLOT_GEN);
	__u32 *slotp;

	if (!cur || !gen || !now_gen)
		return;
	if (prev_pid && *cur && *cur <= SCHED_CGROUPS && *gen == *now_gen) {
		__u32 slot = *cur - 1;

		cgroup_add(cpu, slot, involuntary ? SCHED_CG_INVOLUNTARY : SCHED_CG_VOLUNTARY, 1);
		if (arrived && arrived <= now)
			cgroup_add(cpu, slot, SCHED_CG_ONCPU, now - arrived);
	}
	*cur = 0;
	if (!next_pid)
		return;
	id = task_cgroup_id(btf, next);
	slotp = bpf_map_lookup_elem(&sched_cgroup_ids, &id);
	if (!slotp || *slotp >= SCHED_CGROUPS)
		return;
	*cur = *slotp + 1;
	*gen = *now_gen;
	if (queued && queued <= now)
		cgroup_add(cpu, *slotp, SCHED_CG_RUNQUEUE, now - queued);
}

/* `btf` is a constant after inlining: the tp_btf twin reads task fields
 * with plain loads, the raw_tp twin through bpf_probe_read. */
static __always_inline void on_switch(bool btf, bool preempt, struct task_struct *prev,
				      struct task_struct *next, unsigned int prev_state)
{
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 prev_pid = SONDE_READ(btf, prev, pid), next_pid = SONDE_READ(btf, next, pid);
	bool involuntary = preempt || prev_state == TASK_RUNNING;
	__u64 now, arrived = 0, queued = 0;
	struct departure *d;

	/* The idle task (pid 0) is not work: its switches are not counted. */
	if (prev_pid)
		count(cpu, involuntary ? SCHED_SLOT_INVOLUNTARY : SCHED_SLOT_VOLUNTARY);
	if (!bpf_core_field_exists(prev->se.cfs_rq))
		return;
	now = btf ? prev->se.cfs_rq->rq->clock : BPF_CORE_READ(prev, se.cfs_rq, rq, clock);
	if (prev_pid) {
		arrived = SONDE_READ(btf, prev, sched_info.last_arrival);
		if (arrived)
			observe(cpu, SCHED_HIST_RUNNING, arrived, now);
		if (offcpu) {
			d = stamps(btf, prev, prev_pid, true);
			if (d)
				d->at = now;
			else
				count(cpu, SCHED_SLOT_DISCARDED);
		}
	}
	if (next_pid) {
		/* The wait on the run queue it runs from: a task the load
		 * balancer moved while it waited counts from its arrival on
		 * this queue. */
		queued = SONDE_READ(btf, next, sched_info.last_queued);
		if (queued)
			observe(cpu, SCHED_HIST_RUNQUEUE, queued, now);
		if (offcpu) {
			d = stamps(btf, next, next_pid, false);
			if (d && d->at)
				observe(cpu, SCHED_HIST_OFFCPU, d->at, now);
		}
	}
	if (cgroups)
		cgroup_switch(btf, cpu, prev_pid, next_pid, next, involuntary, arrived, queued,
			      now);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch_btf, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	on_switch(true, preempt, prev, next, prev_state);
	return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(sched_switch_raw, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	on_switch(false, preempt, prev, next, prev_state);
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
