/* TCP: retransmits, connect latency, smoothed RTT and its deviation,
 * bytes and segments by direction, resets. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "sonde.h"
#include "tcp.h"

#define IPPROTO_TCP 6
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define RX 0
#define TX 1

/* SYN_SENT stamp per socket until it is established or closed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, TCP_CONNECTING);
} tcp_connect_start SEC(".maps");

SONDE_ARRAY(tcp_counters);
SONDE_ARRAY(tcp_histograms);

static __always_inline void count(__u32 slot, __u64 v)
{
	array_add(&tcp_counters, bpf_get_smp_processor_id() * TCP_BANK + slot, v);
}

static __always_inline void observe(__u32 h, __u64 v)
{
	__u32 cpu = bpf_get_smp_processor_id();

	array_add(&tcp_histograms, (cpu * TCP_HISTS + h) * HISTOGRAM_BUCKETS + h2_index(v), 1);
	array_add(&tcp_counters, cpu * TCP_BANK + TCP_SLOT_SUM + h, v);
}

static __always_inline bool is_tcp(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP;
}

static __always_inline void on_state(const struct sock *sk, int old, int new)
{
	__u64 key = (__u64)sk, now, *start;

	if (!is_tcp(sk))
		return;
	if (new == TCP_SYN_SENT) {
		now = bpf_ktime_get_ns();
		if (bpf_map_update_elem(&tcp_connect_start, &key, &now, BPF_ANY))
			count(TCP_SLOT_DISCARDED, 1);
		return;
	}
	if (old != TCP_SYN_SENT)
		return;
	start = bpf_map_lookup_elem(&tcp_connect_start, &key);
	if (!start)
		return;
	now = bpf_ktime_get_ns();
	if (new == TCP_ESTABLISHED && now >= *start)
		observe(TCP_HIST_CONNECT, now - *start);
	bpf_map_delete_elem(&tcp_connect_start, &key);
}

static __always_inline void on_probe(struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	/* srtt_us is 8x and mdev_us 4x the microseconds they stand for. */
	observe(TCP_HIST_SRTT, (__u64)(BPF_CORE_READ(tp, srtt_us) >> 3) * 1000);
	observe(TCP_HIST_JITTER, (__u64)(BPF_CORE_READ(tp, mdev_us) >> 2) * 1000);
}

static __always_inline void on_length(struct sock *sk, int ret, int dir)
{
	if (ret <= 0 || !is_tcp(sk))
		return;
	count(TCP_SLOT_BYTES + dir, ret);
	observe(TCP_HIST_SIZE_RX + dir, ret);
}

/* Whether the IP packet at `l3` carries TCP (IPv6 extension headers are
 * not followed). */
static __always_inline bool l3_is_tcp(__u16 proto, unsigned char *l3)
{
	__u8 next = 0;

	if (proto == bpf_htons(ETH_P_IP))
		bpf_probe_read_kernel(&next, 1, l3 + 9);
	else if (proto == bpf_htons(ETH_P_IPV6))
		bpf_probe_read_kernel(&next, 1, l3 + 6);
	return next == IPPROTO_TCP;
}

static __always_inline void on_receive(struct sk_buff *skb)
{
	/* On receive, data already points past the link-layer header. */
	if (l3_is_tcp(BPF_CORE_READ(skb, protocol), BPF_CORE_READ(skb, data)))
		count(TCP_SLOT_PACKETS + RX, 1);
}

static __always_inline void on_transmit(const struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);

	if (l3_is_tcp(BPF_CORE_READ(skb, protocol), head + nh))
		count(TCP_SLOT_PACKETS + TX, 1);
}

SONDE_HOOK(tcp_retransmit_skb, tcp_retransmit_skb, count(TCP_SLOT_RETRANSMITS, 1),
	   const struct sock *sk, const struct sk_buff *skb)

SONDE_HOOK(inet_sock_set_state, inet_sock_set_state, on_state(sk, old, new), const struct sock *sk,
	   const int old, const int new)

SONDE_HOOK(tcp_probe, tcp_probe, on_probe(sk), struct sock *sk, const struct sk_buff *skb)

SONDE_HOOK(sock_recv_length, sock_recv_length, on_length(sk, ret, RX), struct sock *sk, int ret,
	   int flags)

SONDE_HOOK(sock_send_length, sock_send_length, on_length(sk, ret, TX), struct sock *sk, int ret,
	   int flags)

SONDE_HOOK(tcp_receive_reset, tcp_receive_reset, count(TCP_SLOT_RESETS + RX, 1), struct sock *sk)

SONDE_HOOK(tcp_send_reset, tcp_send_reset, count(TCP_SLOT_RESETS + TX, 1), const struct sock *sk,
	   const struct sk_buff *skb)

SONDE_HOOK(tcp_netif_receive_skb, netif_receive_skb, on_receive(skb), struct sk_buff *skb)

SONDE_HOOK(tcp_net_dev_start_xmit, net_dev_start_xmit, on_transmit(skb), const struct sk_buff *skb,
	   const struct net_device *dev)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
