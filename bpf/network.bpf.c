/* Network traffic by direction (all devices), drops by reason, transmit
 * timeouts. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sonde.h"
#include "network.h"

#define RX 0
#define TX 1

SONDE_ARRAY(net_counters);
SONDE_ARRAY(net_drops);

static __always_inline void on_packet(const struct sk_buff *skb, int dir)
{
	__u32 cpu = bpf_get_smp_processor_id();

	array_add(&net_counters, cpu * NET_BANK + NET_SLOT_BYTES + dir, BPF_CORE_READ(skb, len));
	array_add(&net_counters, cpu * NET_BANK + NET_SLOT_PACKETS + dir, 1);
}

static __always_inline void on_drop(__u32 reason)
{
	/* 0 is "not dropped yet", 1 is SKB_CONSUMED: neither is a drop. */
	if (reason <= 1)
		return;
	if (reason >= NET_DROP_REASONS)
		reason = NET_DROP_REASONS - 1;
	array_add(&net_drops, bpf_get_smp_processor_id() * NET_DROP_REASONS + reason, 1);
}

SONDE_HOOK(netif_receive_skb, netif_receive_skb, on_packet(skb, RX), struct sk_buff *skb)

SONDE_HOOK(net_dev_start_xmit, net_dev_start_xmit, on_packet(skb, TX), const struct sk_buff *skb,
	   const struct net_device *dev)

SONDE_HOOK(kfree_skb, kfree_skb, on_drop(reason), struct sk_buff *skb, void *location,
	   enum skb_drop_reason reason)

SONDE_HOOK(net_dev_xmit_timeout, net_dev_xmit_timeout,
	   array_add(&net_counters, bpf_get_smp_processor_id() * NET_BANK + NET_SLOT_TIMEOUTS, 1),
	   struct net_device *dev, int queue)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
