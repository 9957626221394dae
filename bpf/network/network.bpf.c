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

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(netif_receive_skb_btf, struct sk_buff *skb)
{
	on_packet(skb, RX);
	return 0;
}

SEC("raw_tp/netif_receive_skb")
int BPF_PROG(netif_receive_skb_raw, struct sk_buff *skb)
{
	on_packet(skb, RX);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(net_dev_start_xmit_btf, const struct sk_buff *skb, const struct net_device *dev)
{
	on_packet(skb, TX);
	return 0;
}

SEC("raw_tp/net_dev_start_xmit")
int BPF_PROG(net_dev_start_xmit_raw, const struct sk_buff *skb, const struct net_device *dev)
{
	on_packet(skb, TX);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kfree_skb_btf, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	on_drop(reason);
	return 0;
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(kfree_skb_raw, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	on_drop(reason);
	return 0;
}

SEC("tp_btf/net_dev_xmit_timeout")
int BPF_PROG(net_dev_xmit_timeout_btf, struct net_device *dev, int queue)
{
	array_add(&net_counters, bpf_get_smp_processor_id() * NET_BANK + NET_SLOT_TIMEOUTS, 1);
	return 0;
}

SEC("raw_tp/net_dev_xmit_timeout")
int BPF_PROG(net_dev_xmit_timeout_raw, struct net_device *dev, int queue)
{
	array_add(&net_counters, bpf_get_smp_processor_id() * NET_BANK + NET_SLOT_TIMEOUTS, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
