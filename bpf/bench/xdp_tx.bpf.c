// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The no-op reference: every frame goes straight back out. It is the
 * "loopback" device under test of the throughput benchmark, and the
 * baseline of the per-packet cost measured with BPF_PROG_TEST_RUN. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
