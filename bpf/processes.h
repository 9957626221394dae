/* processes sampler: shared with src/samplers/processes/ */
/* Ring buffer of exited processes: 80 bytes a record (72 and the ring's
 * 8-byte header), 6553 of them, drained every second (a host would have
 * to end over 6500 processes a second to overflow it; what does not fit
 * is counted as discarded). */
#define PROCESSES_RINGBUF_BYTES 524288
/* Per-CPU bank: records that did not fit in the ring buffer. */
#define PROCESSES_SLOT_LOST 0
#define PROCESSES_BANK 8
/* task_struct.flags bit of kernel threads (include/linux/sched.h). */
#define PROCESSES_PF_KTHREAD 2097152
