// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP_PASS, nothing else. A veth drops the frames its peer sends with
 * XDP_TX unless the receiving end has an XDP program of its own (it needs
 * the XDP receive queues that attaching one sets up), so the lab attaches
 * this to the switch-side peer of every LBN trunk:
 *   ip link set dev X xdpdrv obj xdp_pass.o sec xdp
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
