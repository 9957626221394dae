/* TCP: smoothed RTT and its deviation, connect latency, retransmits,
 * resets; with `calls = true` bytes and call sizes by direction.
 *
 * Nothing here runs per packet or, by default, per call: RTT is read from
 * every established connection by an iterator the agent runs once per
 * interval, connect latency and resets hook rare events, and segment
 * counts come from /proc/net/snmp (the kernel's own InSegs/OutSegs). The
 * optional per-call programs (sock_send_length, sock_recv_length) cost one
 * program run per application send or receive. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "sonde.h"
#include "tcp.h"

#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define RX 0
#define TX 1

_Static_assert(TCP_SLOT_RESETS + 2 <= TCP_SLOT_SUM, "bank slots overlap");
_Static_assert(TCP_SLOT_SUM + TCP_HISTS <= TCP_SLOT_DISCARDED, "bank slots overlap");
_Static_assert(TCP_SLOT_DISCARDED < TCP_BANK, "bank overflows");
_Static_assert(TCP_BANK % CACHELINE_U64S == 0, "bank is not whole cache lines");

/* SYN_SENT stamp per socket until it is established or closed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, TCP_CONNECTING);
} tcp_connect_start SEC(".maps");

SONDE_ARRAY(tcp_counters);
SONDE_ARRAY(tcp_histograms);

static __always_inline void count(__u32 cpu, __u32 slot, __u64 v)
{
	bank_add(&tcp_counters, TCP_BANK, cpu, slot, v);
}

static __always_inline void observe(__u32 cpu, __u32 h, __u64 v)
{
	hist_add(&tcp_histograms, TCP_HISTS, cpu, h, v);
	count(cpu, TCP_SLOT_SUM + h, v);
}

static __always_inline void on_state(bool btf, const struct sock *sk, int old, int new)
{
	__u64 key = (__u64)sk, now, *start;
	__u32 cpu = bpf_get_smp_processor_id();

	if (SONDE_READ(btf, sk, sk_protocol) != IPPROTO_TCP)
		return;
	if (new == TCP_SYN_SENT) {
		now = bpf_ktime_get_ns();
		if (bpf_map_update_elem(&tcp_connect_start, &key, &now, BPF_ANY))
			count(cpu, TCP_SLOT_DISCARDED, 1);
		return;
	}
	if (old != TCP_SYN_SENT)
		return;
	start = bpf_map_lookup_elem(&tcp_connect_start, &key);
	if (!start)
		return;
	now = bpf_ktime_get_ns();
	if (new == TCP_ESTABLISHED && now >= *start)
		observe(cpu, TCP_HIST_CONNECT, now - *start);
	bpf_map_delete_elem(&tcp_connect_start, &key);
}

/* One application send or receive of `ret` bytes (`calls = true`). */
static __always_inline void on_length(bool btf, struct sock *sk, int ret, int dir)
{
	__u32 cpu;

	if (ret <= 0 || SONDE_READ(btf, sk, sk_protocol) != IPPROTO_TCP)
		return;
	cpu = bpf_get_smp_processor_id();
	count(cpu, TCP_SLOT_BYTES + dir, ret);
	observe(cpu, TCP_HIST_SIZE_RX + dir, ret);
}

/* Run by the agent over every TCP socket of its network namespace, once
 * per interval: each established connection's smoothed RTT and its mean
 * deviation (srtt_us is 8x and mdev_us 4x the microseconds they stand
 * for); a connection without an RTT sample yet is skipped. */
SEC("iter/tcp")
int tcp_rtt(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;
	__u32 cpu, srtt;

	if (!skc || skc->skc_state != TCP_ESTABLISHED)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	srtt = tp->srtt_us;
	if (!srtt)
		return 0;
	cpu = bpf_get_smp_processor_id();
	observe(cpu, TCP_HIST_SRTT, (__u64)(srtt >> 3) * 1000);
	observe(cpu, TCP_HIST_JITTER, (__u64)(tp->mdev_us >> 2) * 1000);
	return 0;
}

SONDE_HOOK(tcp_retransmit_skb, tcp_retransmit_skb,
	   count(bpf_get_smp_processor_id(), TCP_SLOT_RETRANSMITS, 1), const struct sock *sk,
	   const struct sk_buff *skb)

SONDE_HOOK(inet_sock_set_state, inet_sock_set_state, on_state(btf, sk, old, new),
	   const struct sock *sk, const int old, const int new)

SONDE_HOOK(sock_recv_length, sock_recv_length, on_length(btf, sk, ret, RX), struct sock *sk,
	   int ret, int flags)

SONDE_HOOK(sock_send_length, sock_send_length, on_length(btf, sk, ret, TX), struct sock *sk,
	   int ret, int flags)

SONDE_HOOK(tcp_receive_reset, tcp_receive_reset,
	   count(bpf_get_smp_processor_id(), TCP_SLOT_RESETS + RX, 1), struct sock *sk)

SONDE_HOOK(tcp_send_reset, tcp_send_reset,
	   count(bpf_get_smp_processor_id(), TCP_SLOT_RESETS + TX, 1), const struct sock *sk,
	   const struct sk_buff *skb)

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
