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
#define SYSCALL_BANK 40
