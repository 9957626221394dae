/* tcp sampler: shared with src/samplers/tcp.rs */
#define TCP_HISTS 5
#define TCP_HIST_CONNECT 0
#define TCP_HIST_SRTT 1
#define TCP_HIST_JITTER 2
#define TCP_HIST_SIZE_RX 3
#define TCP_HIST_SIZE_TX 4
/* Per-CPU bank. Direction pairs are receive then transmit. */
#define TCP_SLOT_RETRANSMITS 0
#define TCP_SLOT_BYTES 1
#define TCP_SLOT_RESETS 3
#define TCP_SLOT_SUM 5
#define TCP_SLOT_DISCARDED 10
#define TCP_BANK 16
/* Connections in SYN_SENT that can be tracked at once. */
#define TCP_CONNECTING 16384
