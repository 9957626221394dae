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
#define SCHED_BANK 8
/* Bound of the raw_tp twin's per-task hash (tp_btf uses task storage). */
#define SCHED_RAW_TASKS 65536
