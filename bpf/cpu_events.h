/* cpu_events sampler: shared with src/samplers/cpu_events.rs */
/* enum tlb_flush_reason values below 7, then "other". */
#define CPU_TLB_REASONS 8
#define CPU_SLOT_MIGRATIONS 0
#define CPU_SLOT_TLB 1
#define CPU_BANK 16
