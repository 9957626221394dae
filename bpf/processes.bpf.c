/* CPU and I/O of processes at their end, so a process group's counters
 * keep what its members used between the last /proc walk and their exit,
 * and what members that lived and died between two walks used.
 *
 * sched_process_free runs once per task, after it was reaped (an RCU
 * callback of release_task). When the thread group's leader is freed every
 * thread has gone through __exit_signal, which adds each thread's times
 * (the leader's included) and I/O to its signal_struct: the signal's totals
 * are then the whole process's, exactly what /proc/PID/stat and io showed
 * while it lived. Other threads, and an old leader that exec() from a
 * thread retired (its pid is no longer the tgid), are skipped. Exits are
 * rare next to context switches or syscalls: one record per process. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sonde.h"
#include "processes.h"

_Static_assert(PROCESSES_SLOT_LOST < PROCESSES_BANK, "bank overflows");
_Static_assert(PROCESSES_BANK % CACHELINE_U64S == 0, "bank is not whole cache lines");

/* One record per ended process, read by src/samplers/processes/exits.rs
 * through the skeleton's generated `types::process_exit`. */
struct process_exit {
	__u32 tgid;
	__u32 flags;
	__u64 start_boottime;
	/* Time on CPU of every thread, in ns (sum_exec_runtime). */
	__u64 runtime;
	/* Tick-sampled user and system time: their ratio splits runtime. */
	__u64 utime;
	__u64 stime;
	__u64 read_bytes;
	__u64 write_bytes;
	char comm[16];
};

/* Never written: its type puts `struct process_exit` in the skeleton's
 * generated types, which user space decodes the records with. */
struct process_exit process_exit_layout = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROCESSES_RINGBUF_BYTES);
} process_exits SEC(".maps");

SONDE_ARRAY(processes_counters);

static __always_inline void on_free(struct task_struct *p)
{
	struct signal_struct *sig;
	struct process_exit *e;
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (BPF_CORE_READ(p, pid) != tgid)
		return;
	sig = BPF_CORE_READ(p, signal);
	if (!sig)
		return;
	e = bpf_ringbuf_reserve(&process_exits, sizeof(*e), 0);
	if (!e) {
		bank_add(&processes_counters, PROCESSES_BANK, bpf_get_smp_processor_id(),
			 PROCESSES_SLOT_LOST, 1);
		return;
	}
	e->tgid = tgid;
	e->flags = BPF_CORE_READ(p, flags);
	e->start_boottime = BPF_CORE_READ(p, start_boottime);
	e->runtime = BPF_CORE_READ(sig, sum_sched_runtime);
	e->utime = BPF_CORE_READ(sig, utime);
	e->stime = BPF_CORE_READ(sig, stime);
	e->read_bytes = BPF_CORE_READ(sig, ioac.read_bytes);
	e->write_bytes = BPF_CORE_READ(sig, ioac.write_bytes);
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	/* Nobody waits on it: user space drains it on a timer. */
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

SONDE_HOOK(sched_process_free, sched_process_free, on_free(p), struct task_struct *p)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
