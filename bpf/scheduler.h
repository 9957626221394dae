/* scheduler sampler: shared with src/samplers/scheduler.rs */
#define SCHED_HISTS 3
#define SCHED_HIST_RUNQUEUE 0
#define SCHED_HIST_OFFCPU 1
#define SCHED_HIST_RUNNING 2
/* Per-CPU bank: a value sum per histogram, then switch counts. */
#define SCHED_SLOT_SUM 0
#define SCHED_SLOT_VOLUNTARY 3
#define SCHED_SLOT_INVOLUNTARY 4
#define SCHED_SLOT_DISCARDED 5
/* 1 + the cgroup slot of the task now on this CPU (0: none); state, not a
 * counter: written at each switch with cgroup attribution on. */
#define SCHED_SLOT_CGROUP 6
/* The slot generation SCHED_SLOT_CGROUP was looked up in, and, in CPU 0's
 * bank only, the current one (bumped by the cgroup sampler when slots
 * change): a task that ran across a change is not attributed. */
#define SCHED_SLOT_CG_GEN 7
#define SCHED_SLOT_GEN 8
#define SCHED_BANK 16
/* Cgroup attribution: the cgroup sampler gives each exported cgroup a
 * slot (cgroup id -> slot in sched_cgroup_ids); per CPU and slot, a bank
 * of run-queue wait, on-CPU time and switches. */
#define SCHED_CGROUPS 1024
#define SCHED_CG_RUNQUEUE 0
#define SCHED_CG_ONCPU 1
#define SCHED_CG_VOLUNTARY 2
#define SCHED_CG_INVOLUNTARY 3
#define SCHED_CG_FIELDS 4
/* Bound of the raw_tp twin's per-task hash (tp_btf uses task storage). */
#define SCHED_RAW_TASKS 65536
