/* softirq sampler: shared with src/samplers/softirq.rs */
#define SOFTIRQ_KINDS 10
/* Per-CPU bank: time per kind, the entry stamp, discarded events. */
#define SOFTIRQ_SLOT_TIME 0
#define SOFTIRQ_SLOT_START 10
#define SOFTIRQ_SLOT_DISCARDED 11
#define SOFTIRQ_BANK 16
