/* Shared by every Sonde BPF program. The #defines here (and in each
 * sampler's own header) are also Rust constants: build.rs turns every
 * `#define NAME number` into `bpf::consts::<header>::NAME`. */
#ifndef SONDE_H
#define SONDE_H

/* H2 histogram of the `histogram` crate: grouping power 3, max value
 * power 64, 496 buckets. */
#define HISTOGRAM_BUCKETS 496
#define HISTOGRAM_GROUPING_POWER 3
/* u64 counters per cache line: per-CPU banks are padded to this. */
#define CACHELINE_U64S 8

/* An mmap'able array of u64, read by user space without syscalls. Its
 * size is set by the loader (possible CPUs x bank width) before load. */
#define SONDE_ARRAY(name)                                                                          \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_ARRAY);                                                  \
		__uint(map_flags, BPF_F_MMAPABLE);                                                 \
		__type(key, __u32);                                                                \
		__type(value, __u64);                                                              \
		__uint(max_entries, 1);                                                            \
	} name SEC(".maps")

/* Index of `v` in the H2 layout; equals the crate's `index` for every u64
 * (tested from Rust). floor(log2) by binary search: BPF has no clz. */
static __always_inline __u32 h2_index(__u64 v)
{
	__u64 x = v;
	__u32 h = 0, s;

	if (v < (1 << (HISTOGRAM_GROUPING_POWER + 1)))
		return v;
	if (x >> 32) {
		h += 32;
		x >>= 32;
	}
	if (x >> 16) {
		h += 16;
		x >>= 16;
	}
	if (x >> 8) {
		h += 8;
		x >>= 8;
	}
	if (x >> 4) {
		h += 4;
		x >>= 4;
	}
	if (x >> 2) {
		h += 2;
		x >>= 2;
	}
	if (x >> 1)
		h += 1;
	s = h - HISTOGRAM_GROUPING_POWER;
	return (s << HISTOGRAM_GROUPING_POWER) + (__u32)(v >> s);
}

/* Defines program `<name>_btf` on tp_btf/<tp> and its twin `<name>_raw` on
 * raw_tp/<tp>, both running `body` with the tracepoint's arguments. `body`
 * may use `btf` (true in the tp_btf twin), e.g. through SONDE_READ. The
 * loader picks one twin by probing; keeping both in one line keeps them
 * the same. */
#define SONDE_HOOK(name, tp, body, ...)                                                            \
	SEC("tp_btf/" #tp)                                                                         \
	int BPF_PROG(name##_btf, ##__VA_ARGS__)                                                    \
	{                                                                                          \
		const bool btf = true;                                                             \
		(void)btf;                                                                         \
		body;                                                                              \
		return 0;                                                                          \
	}                                                                                          \
	SEC("raw_tp/" #tp)                                                                         \
	int BPF_PROG(name##_raw, ##__VA_ARGS__)                                                    \
	{                                                                                          \
		const bool btf = false;                                                            \
		(void)btf;                                                                         \
		body;                                                                              \
		return 0;                                                                          \
	}

/* Reads `p->field`: a plain load in tp_btf programs (BTF pointers), a
 * bpf_probe_read in their raw_tp twins. `btf` is a constant once the
 * shared body is inlined into each twin, so each keeps only its branch. */
#define SONDE_READ(btf, p, field) ((btf) ? (p)->field : BPF_CORE_READ(p, field))

/* Adds `v` to slot `idx` of an mmap'able array (a per-CPU bank slot or a
 * histogram bucket). The slot is only written from one CPU and the same
 * program does not nest on a CPU, so a plain add is safe and cheapest. */
static __always_inline void array_add(void *map, __u32 idx, __u64 v)
{
	__u64 *c = bpf_map_lookup_elem(map, &idx);

	if (c)
		*c += v;
}

/* The indexing of the two array shapes, written once (the Rust side reads
 * them so, src/bpf/mmap.rs). Every argument but the CPU and the value is a
 * constant where these are inlined, so they cost what the open-coded
 * arithmetic did. */

/* Slot `slot` of `cpu`'s bank, in an array of per-CPU banks `width` u64s
 * wide (state a program reads back, e.g. a stamp): NULL past the end. */
static __always_inline __u64 *bank_get(void *banks, __u32 width, __u32 cpu, __u32 slot)
{
	__u32 idx = cpu * width + slot;

	return bpf_map_lookup_elem(banks, &idx);
}

/* Adds `v` to slot `slot` of `cpu`'s bank. */
static __always_inline void bank_add(void *banks, __u32 width, __u32 cpu, __u32 slot, __u64 v)
{
	array_add(banks, cpu * width + slot, v);
}

/* Counts `v` in histogram `h` of `cpu`, in an array of `count` H2
 * histograms per CPU. */
static __always_inline void hist_add(void *hists, __u32 count, __u32 cpu, __u32 h, __u64 v)
{
	array_add(hists, (cpu * count + h) * HISTOGRAM_BUCKETS + h2_index(v), 1);
}

/* The step every latency takes: `end - start` counted in histogram `h` and
 * added to the bank's `sum` slot (the exact total, for the mean); stamps
 * out of order count in the bank's `discarded` slot instead, so a negative
 * time is never bucketed. */
static __always_inline void observe_span(void *hists, __u32 count, void *banks, __u32 width,
					 __u32 cpu, __u32 h, __u32 sum, __u32 discarded,
					 __u64 start, __u64 end)
{
	if (end < start) {
		bank_add(banks, width, cpu, discarded, 1);
		return;
	}
	hist_add(hists, count, cpu, h, end - start);
	bank_add(banks, width, cpu, sum, end - start);
}

#endif
