/* Test-only program: runs h2_index over the values user space writes, so
 * a Rust test can compare the BPF bucket function with the crate's. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sonde.h"
#include "h2.h"

SONDE_ARRAY(h2_values);
SONDE_ARRAY(h2_indexes);

SEC("syscall")
int h2_test(void *ctx)
{
	for (__u32 i = 0; i < H2_TEST_VALUES; i++) {
		__u32 k = i;
		__u64 *v = bpf_map_lookup_elem(&h2_values, &k);
		__u64 *out = bpf_map_lookup_elem(&h2_indexes, &k);

		if (v && out)
			*out = h2_index(*v);
	}
	return 0;
}

/* GPL-compatible for the kernel (GPL-only helpers), MIT like the rest. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
