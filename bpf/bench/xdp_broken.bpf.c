// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A deliberately wrong device under test, for the benchmark harness's own
 * tests: it sends every frame back as the loopback does, but corrupts the
 * destination MAC of every Nth frame. It is fast, and wrong; the tester's
 * rewrite check must catch it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "bench.h"

const volatile struct broken_cfg broken_cfg = {};

__u64 broken_seen = 0;

SEC("xdp")
int xdp_broken(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 every = broken_cfg.every;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	broken_seen++;
	if (every && broken_seen % every == 0)
		eth->h_dest[5] ^= 0x01;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
