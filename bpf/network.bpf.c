/* Packet drops by reason and transmit timeouts: both rare, so their
 * programs cost nothing on the packet path. (Bytes and packets come from
 * the kernel's per-device counters in /proc/net/dev: no per-packet
 * program.) */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "sonde.h"
#include "network.h"

_Static_assert(NET_SLOT_TIMEOUTS < NET_BANK, "bank overflows");
_Static_assert(NET_BANK % CACHELINE_U64S == 0, "bank is not whole cache lines");
_Static_assert(NET_DROP_REASONS % CACHELINE_U64S == 0, "bank is not whole cache lines");

SONDE_ARRAY(net_counters);
SONDE_ARRAY(net_drops);

/* kfree_skb fires for drops only: consumed packets take consume_skb. */
static __always_inline void on_drop(__u32 reason)
{
	/* 0 is "not dropped yet", 1 is SKB_CONSUMED: neither is a drop. */
	if (reason <= 1)
		return;
	if (reason >= NET_DROP_REASONS)
		reason = NET_DROP_REASONS - 1;
	bank_add(&net_drops, NET_DROP_REASONS, bpf_get_smp_processor_id(), reason, 1);
}

SONDE_HOOK(kfree_skb, kfree_skb, on_drop(reason), struct sk_buff *skb, void *location,
	   enum skb_drop_reason reason)

SONDE_HOOK(net_dev_xmit_timeout, net_dev_xmit_timeout,
	   bank_add(&net_counters, NET_BANK, bpf_get_smp_processor_id(), NET_SLOT_TIMEOUTS, 1),
	   struct net_device *dev, int queue)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
