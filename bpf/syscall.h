/* syscall sampler: shared with src/samplers/syscall/mod.rs */
#define SYSCALL_OPS 16
/* Size of the syscall number -> op table. */
#define SYSCALL_MAX_NR 1024
/* Per-CPU bank: latency sum per op, count per op (counts-only mode; with
 * latency the counts are the histogram totals), then discarded events. */
#define SYSCALL_SLOT_SUM 0
#define SYSCALL_SLOT_COUNT 16
#define SYSCALL_SLOT_DISCARDED 32
#define SYSCALL_BANK 40
