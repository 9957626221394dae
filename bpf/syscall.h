/* syscall sampler: shared with src/samplers/syscall/mod.rs */
#define SYSCALL_OPS 16
/* Size of the syscall number -> op table. */
#define SYSCALL_MAX_NR 1024
/* Per-CPU bank: syscalls entered per op, latency sum per op (timed ones),
 * discarded events, the sampling countdown. */
#define SYSCALL_SLOT_COUNT 0
#define SYSCALL_SLOT_SUM 16
#define SYSCALL_SLOT_DISCARDED 32
#define SYSCALL_SLOT_COUNTDOWN 33
/* Cgroup attribution cache (state, not counters): the css_set of the task
 * last seen entering a syscall on this CPU, 1 + its cgroup slot (0: none),
 * and the slot generation it was looked up in. */
#define SYSCALL_SLOT_CG_TASK 34
#define SYSCALL_SLOT_CG_SLOT 35
#define SYSCALL_SLOT_CG_GEN 36
/* In CPU 0's bank only: the generation, bumped by the cgroup sampler
 * whenever slots change, which empties every CPU's cache. */
#define SYSCALL_SLOT_GEN 37
#define SYSCALL_BANK 40
/* Cgroup attribution: slots (as the scheduler's) x ops, per CPU. */
#define SYSCALL_CGROUPS 1024
