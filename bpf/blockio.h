/* blockio sampler: shared with src/samplers/blockio.rs */
#define BLOCKIO_OPS 4
/* Histograms: latency per op, then size per op. */
#define BLOCKIO_HISTS 8
#define BLOCKIO_HIST_SIZE 4
/* Per-CPU bank: per-op counters and sums, then discarded events. */
#define BLOCKIO_SLOT_OPS 0
#define BLOCKIO_SLOT_BYTES 4
#define BLOCKIO_SLOT_ERRORS 8
#define BLOCKIO_SLOT_LATENCY_SUM 12
#define BLOCKIO_SLOT_DISCARDED 16
#define BLOCKIO_BANK 24
