/* network sampler: shared with src/samplers/network.rs */
#define NET_SLOT_TIMEOUTS 0
#define NET_BANK 8
/* Drop reasons counted per CPU, by the kernel's enum skb_drop_reason
 * value; larger values (subsystem reasons) share the last slot. */
#define NET_DROP_REASONS 256
