/* Syscall counts by operation class (read, write, poll, ...), and the
 * latency of every syscall or of a random sample of them.
 *
 * Counting needs one program on sys_enter and no clock. Timing needs a
 * second program on sys_exit, which runs on every syscall (it must look
 * for a stamp), so it roughly doubles the cost; the two clock reads and
 * the per-task stamp are paid only by the syscalls that are timed. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"
#include "syscall.h"
#include "cgroup.h"

_Static_assert(SYSCALL_SLOT_COUNT + SYSCALL_OPS <= SYSCALL_SLOT_SUM, "bank slots overlap");
_Static_assert(SYSCALL_SLOT_SUM + SYSCALL_OPS <= SYSCALL_SLOT_DISCARDED, "bank slots overlap");
_Static_assert(SYSCALL_SLOT_COUNTDOWN < SYSCALL_SLOT_CG_TASK, "bank slots overlap");
_Static_assert(SYSCALL_SLOT_GEN < SYSCALL_BANK, "bank overflows");
_Static_assert(SYSCALL_BANK % CACHELINE_U64S == 0, "bank is not whole cache lines");

/* Set by the loader before load; the verifier prunes what they turn off. */
const volatile bool timed = false;
/* Time 1 in `sample_every` syscalls on average (1: every one). */
const volatile __u32 sample_every = 1;
/* Per-cgroup syscall counts. */
const volatile bool cgroups = false;

struct start {
	__u64 ts;
	__u32 op;
};

/* Per-task start stamp, freed with the task. */
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
/* cpus x SYSCALL_CGROUPS x SYSCALL_OPS (1 entry with cgroups off). */
SONDE_ARRAY(syscall_cgroups);

/* Cgroup id -> slot, written by the cgroup sampler (same slots as the
 * scheduler's). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u32);
	__uint(max_entries, SYSCALL_CGROUPS);
} syscall_cgroup_ids SEC(".maps");

static __always_inline __u64 *bank_slot(__u32 cpu, __u32 slot)
{
	return bank_get(&syscall_counters, SYSCALL_BANK, cpu, slot);
}

static __always_inline void count(__u32 cpu, __u32 slot)
{
	bank_add(&syscall_counters, SYSCALL_BANK, cpu, slot, 1);
}

/* Counts the syscall for the current task's cgroup. The cache is keyed by
 * the task's css_set (its cgroup membership, shared by the tasks of one
 * container): a task that moves itself into a cgroup, as container
 * runtimes do before exec, gets a new css_set and a fresh lookup. The hash
 * lookup is paid when a task of another membership (or a new slot
 * generation) shows up on the CPU. */
static __always_inline void cgroup_count(bool btf, __u32 cpu, __u32 op)
{
	__u64 *key = bank_slot(cpu, SYSCALL_SLOT_CG_TASK),
	      *slot = bank_slot(cpu, SYSCALL_SLOT_CG_SLOT);
	__u64 *gen = bank_slot(cpu, SYSCALL_SLOT_CG_GEN), *now_gen = bank_slot(0, SYSCALL_SLOT_GEN);
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 cs, id;
	__u32 *s;

	if (!key || !slot || !gen || !now_gen)
		return;
	cs = btf ? (__u64)task->cgroups : (__u64)BPF_CORE_READ(task, cgroups);
	if (*key != cs || *gen != *now_gen) {
		id = task_cgroup_id(btf, task);
		s = bpf_map_lookup_elem(&syscall_cgroup_ids, &id);
		*slot = s && *s < SYSCALL_CGROUPS ? *s + 1 : 0;
		*key = cs;
		*gen = *now_gen;
	}
	if (*slot && *slot <= SYSCALL_CGROUPS)
		/* cpu x slot x op, as the scheduler's per-cgroup banks. */
		array_add(&syscall_cgroups,
			  ((cpu * SYSCALL_CGROUPS) + (__u32)(*slot - 1)) * SYSCALL_OPS + op, 1);
}

/* Whether this syscall is timed. A per-CPU countdown decides, reset to a
 * random gap with mean `sample_every` (uniform in 1 .. 2n-1): random gaps
 * cannot lock onto a workload's repeating pattern of syscalls, so the
 * sample is not tied to the op, the task, the CPU or the latency. */
static __always_inline bool sampled(__u32 cpu)
{
	__u64 *left;

	if (sample_every <= 1)
		return true;
	left = bank_slot(cpu, SYSCALL_SLOT_COUNTDOWN);
	if (!left)
		return false;
	if (*left > 1) {
		*left -= 1;
		return false;
	}
	*left = 1 + bpf_get_prandom_u32() % (2 * sample_every - 1);
	return true;
}

static __always_inline void on_enter(bool btf, long id)
{
	__u32 cpu = bpf_get_smp_processor_id(), nr = id, *opp, op;
	struct start *s;

	opp = bpf_map_lookup_elem(&syscall_ops, &nr);
	op = opp ? *opp : 0;
	count(cpu, SYSCALL_SLOT_COUNT + op);
	if (cgroups && op < SYSCALL_OPS)
		cgroup_count(btf, cpu, op);
	if (!timed || !sampled(cpu))
		return;
	s = bpf_task_storage_get(&syscall_start, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s) {
		count(cpu, SYSCALL_SLOT_DISCARDED);
		return;
	}
	s->op = op;
	s->ts = bpf_ktime_get_ns();
}

static __always_inline void on_exit(void)
{
	struct start *s;
	__u64 now, start;
	__u32 cpu, op;

	s = bpf_task_storage_get(&syscall_start, bpf_get_current_task_btf(), 0, 0);
	if (!s || !s->ts)
		return;
	now = bpf_ktime_get_ns();
	start = s->ts;
	op = s->op;
	s->ts = 0;
	cpu = bpf_get_smp_processor_id();
	/* One test for both reasons to discard: observe_span's order of tests
	 * costs this hot program 15 more instructions (bpftool prog dump). */
	if (now < start || op >= SYSCALL_OPS) {
		count(cpu, SYSCALL_SLOT_DISCARDED);
		return;
	}
	hist_add(&syscall_latency, SYSCALL_OPS, cpu, op, now - start);
	bank_add(&syscall_counters, SYSCALL_BANK, cpu, SYSCALL_SLOT_SUM + op, now - start);
}

SONDE_HOOK(sys_enter, sys_enter, on_enter(btf, id), struct pt_regs *regs, long id)

SONDE_HOOK(sys_exit, sys_exit, on_exit(), struct pt_regs *regs, long ret)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
