/* softirq sampler: shared with src/samplers/softirq.rs */
#define SOFTIRQ_KINDS 10
#define SOFTIRQ_SLOT_COUNT 0
#define SOFTIRQ_SLOT_TIME 10
#define SOFTIRQ_SLOT_START 20
#define SOFTIRQ_SLOT_DISCARDED 21
#define SOFTIRQ_BANK 24
