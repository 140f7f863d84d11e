// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP_PASS that counts what passes: frames by (destination MAC, outer VID as
 * found in the frame, EtherType after the tag). Tests attach it where an LBN
 * program would go (to see what the router sends an LBN, tag included) or in
 * place of xdp_pass on a trunk's switch-side peer (to see what an LBN sends
 * back). It parses the tag in the frame only: a tag the kernel took out of
 * the frame (rxvlan on) is invisible here, exactly as it would be to the LBN.
 *
 * The lab reads the map with bpftool through the program's map ids
 * (xdsr.lab.Lab.xdp_census); nothing is pinned.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define CENSUS_UNTAGGED 0xffff /* vid of an untagged frame */

struct census_key {
	__u8 dst[ETH_ALEN];
	__u16 vid;      /* host order; CENSUS_UNTAGGED if no tag */
	__be16 proto;   /* EtherType after the outer tag */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct census_key);
	__type(value, __u64);
} census SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

SEC("xdp")
int xdp_census(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct census_key key = {};
	__u64 one = 1, *cnt;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(key.dst, eth->h_dest, ETH_ALEN);
	key.vid = CENSUS_UNTAGGED;
	key.proto = eth->h_proto;
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return XDP_PASS;
		key.vid = bpf_ntohs(vh->tci) & 0x0fff;
		key.proto = vh->encap_proto;
	}
	cnt = bpf_map_lookup_elem(&census, &key);
	if (cnt) {
		*cnt += 1;
	} else if (bpf_map_update_elem(&census, &key, &one, BPF_NOEXIST)) {
		/* Another CPU inserted the key first (or the map is full). */
		cnt = bpf_map_lookup_elem(&census, &key);
		if (cnt)
			*cnt += 1;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
