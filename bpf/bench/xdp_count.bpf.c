// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The throughput benchmark's receiver, attached (native) to the tester's
 * veth: it counts every frame the device under test sends back, checks that
 * the frame was handled as expected (see struct count_cfg in bench.h), and
 * drops it.
 *
 * The work is the same for every device under test (parse, source MAC
 * compare, one probe sequence in the expectation table), so the receiver
 * costs each of them alike and the differences between them are the
 * devices' own; the table is small enough (bench.h) that its footprint in
 * the caches barely depends on the number of keys.
 *
 * A veth drops the frames its peer sends with XDP_TX unless it runs an XDP
 * program itself: this program is also what lets the frames come back.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bench.h"

const volatile struct count_cfg count_cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 13); /* the harness sets it to 1 << table_bits */
	__type(key, __u32);
	__type(value, count_slot_t);
} count_expect SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct count_stats);
} count_stats SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline int expected(__u64 macvid, __u32 daddr)
{
	__u32 bits = count_cfg.table_bits;
	__u32 mask = (1u << (bits & 31)) - 1;
	__u64 h = (macvid ^ (daddr * COUNT_HASH_MUL1)) * COUNT_HASH_MUL2;
	__u32 home = h >> ((64 - bits) & 63);
	__u32 fp = (((h ^ (h >> 32)) * COUNT_HASH_MUL1) >> 32) | 1;

#pragma unroll
	for (__u32 i = 0; i < COUNT_MAX_PROBES; i++) {
		__u32 idx = (home + i) & mask;
		count_slot_t *s = bpf_map_lookup_elem(&count_expect, &idx);

		if (!s || !*s)
			return 0;
		if (*s == fp)
			return 1;
	}
	return 0;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct count_stats *st;
	struct iphdr *iph;
	__u64 wire, vid = COUNT_UNTAGGED;
	__be16 proto;
	__u32 zero = 0;
	__u8 *dst_mac = eth->h_dest;

	st = bpf_map_lookup_elem(&count_stats, &zero);
	if (!st)
		return XDP_DROP;
	/* On a wire the frame would carry a 4-byte FCS and be padded to 64. */
	wire = (__u64)(data_end - data) + 4;
	st->frames++;
	st->wire_bytes += wire < 64 ? 64 : wire;

	iph = data + sizeof(*eth);
	if ((void *)(iph + 1) > data_end)
		goto bad_parse;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		vid = bpf_ntohs(vh->tci) & 0x0fff;
		proto = vh->encap_proto;
		iph = (void *)(vh + 1);
		if ((void *)(iph + 1) > data_end)
			goto bad_parse;
	}
	if (proto != bpf_htons(ETH_P_IP) || iph->version != 4)
		goto bad_parse;
	if (count_cfg.vxlan) {
		/* Outer IPv4 without options, UDP, VXLAN, then the frame the
		 * expectations are about; the VNI takes the VID's place. */
		__u8 *vx = (void *)(iph + 1) + 8;
		struct ethhdr *in = (void *)(vx + 8);

		iph = (void *)(in + 1);
		if ((void *)(iph + 1) > data_end)
			goto bad_parse;
		if (in->h_proto != bpf_htons(ETH_P_IP))
			goto bad_parse;
		vid = (__u64)vx[5] << 8 | vx[6];
		dst_mac = in->h_dest;
	}

	if (*(__u32 *)eth->h_source != *(const volatile __u32 *)count_cfg.src_mac ||
	    *(__u16 *)(eth->h_source + 4) != *(const volatile __u16 *)(count_cfg.src_mac + 4)) {
		st->bad_src++;
		return XDP_DROP;
	}
	if (!expected(*(__u32 *)dst_mac | (__u64)*(__u16 *)(dst_mac + 4) << 32 | vid << 48,
		      iph->daddr)) {
		st->bad_dst++;
		return XDP_DROP;
	}
	st->ok++;
	return XDP_DROP;
bad_parse:
	st->bad_parse++;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
