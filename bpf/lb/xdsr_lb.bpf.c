// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The LBN core: stateless L2 direct server return in XDP.
 *
 * For a frame addressed to this interface: parse it, look up the service by
 * (VIP, destination port, protocol, segment), hash the flow onto a slot of
 * the service's Maglev table, and send the frame back out (XDP_TX) with the
 * backend's MAC and VLAN. Every LBN of a group holds identical tables, so
 * the router's ECMP may hand a flow to any of them. Anything that is not a
 * service's traffic goes to the host's stack untouched.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "hashing.h"
#include "maps.h"
#include "parsing.h"
#include "rewrite.h"
#include "stats.h"
#include "xdsr_kern_user.h"

/* Set by the loader for each attachment; the verifier treats these as
 * constants once the object is loaded. */
const volatile struct xdsr_prog_cfg xdsr_cfg = {};

/*
 * Never read. Referencing every shared type from one variable makes clang
 * emit their complete BTF: libbpf needs the table element's size for the
 * inner map template, and tests/dataplane/test_abi.py checks the Python
 * mirror against it. libbpf skips the section, so it costs no map.
 */
struct xdsr_abi_types {
	union xdsr_table_elem elem;
	struct xdsr_counter counter;
	struct xdsr_meta meta;
	enum xdsr_abi abi;
	enum xdsr_seg_type seg_type;
	enum xdsr_table_layout layout;
	enum xdsr_reason reason;
};
struct xdsr_abi_types xdsr_abi_anchor SEC(".xdsr_abi");

static __always_inline int verdict(__u32 reason, __u64 bytes)
{
	count_reason(reason, bytes);
	switch (reason) {
	case XDSR_R_FORWARDED:
		return XDP_TX;
	case XDSR_R_NOT_FOR_US:
	case XDSR_R_NOT_IP:
	case XDSR_R_NO_SERVICE:
		return XDP_PASS;
	default:
		return XDP_DROP;
	}
}

static __always_inline const struct xdsr_backend *pick_backend(void *table, struct xdsr_pkt *pkt,
							       __u32 *stats_id, int *reason)
{
	const union xdsr_table_elem *hdr_elem, *chunk, *block;
	__u32 idx = 0, hash, slot, b;

	hdr_elem = bpf_map_lookup_elem(table, &idx);
	if (!hdr_elem) {
		*reason = XDSR_R_NO_BACKEND;
		return 0;
	}
	*stats_id = hdr_elem->hdr.stats_id;
	if (hdr_elem->hdr.n_backends == 0) {
		*reason = XDSR_R_NO_BACKEND;
		return 0;
	}

	if (pkt->n_words == 4) {
		pkt->hash_words[3] = (pkt->key.seg_id << 16) | pkt->key.proto;
		hash = flow_hash4(pkt->hash_words, xdsr_cfg.hash_seed);
	} else {
		pkt->hash_words[9] = (pkt->key.seg_id << 16) | pkt->key.proto;
		hash = flow_hash10(pkt->hash_words, xdsr_cfg.hash_seed);
	}
	slot = hash_to_slot(hash, hdr_elem->hdr.table_size);

	idx = 1 + slot / XDSR_SLOTS_PER_CHUNK;
	chunk = bpf_map_lookup_elem(table, &idx);
	if (!chunk) {
		*reason = XDSR_R_NO_BACKEND;
		return 0;
	}
	b = chunk->slots[slot % XDSR_SLOTS_PER_CHUNK];
	if (b >= hdr_elem->hdr.n_backends) {
		*reason = XDSR_R_NO_BACKEND;
		return 0;
	}

	idx = hdr_elem->hdr.backends_off + b / XDSR_BACKENDS_PER_BLOCK;
	block = bpf_map_lookup_elem(table, &idx);
	if (!block) {
		*reason = XDSR_R_NO_BACKEND;
		return 0;
	}
	return &block->backends[b % XDSR_BACKENDS_PER_BLOCK];
}

SEC("xdp")
int xdsr_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	const struct xdsr_backend *be;
	struct xdsr_pkt pkt;
	__u32 stats_id = 0;
	void *table;
	int reason, detail;

	reason = parse_packet(data, data_end, xdsr_cfg.mac, &pkt);
	if (reason != XDSR_PARSE_OK)
		return verdict(reason, bytes);

	table = bpf_map_lookup_elem(&xdsr_services, &pkt.key);
	if (!table && pkt.fragment) {
		/* Unreachable with a consistent control side, which always adds
		 * the port-0 entry; kept so a fragment is never misrouted. */
		return verdict(XDSR_R_NO_SERVICE, bytes);
	}
	if (!table)
		return verdict(XDSR_R_NO_SERVICE, bytes);

	be = pick_backend(table, &pkt, &stats_id, &reason);
	if (!be)
		return verdict(reason, bytes);

	reason = rewrite_l2(ctx, &pkt, be, xdsr_cfg.mac, &detail);
	if (reason != XDSR_PARSE_OK)
		return verdict(reason, bytes);

	count(&xdsr_svc_stats, stats_id, bytes);
	if (pkt.fragment)
		count_reason(XDSR_R_FRAGMENT, bytes);
	if (detail >= 0)
		count_reason(detail, bytes);
	return verdict(XDSR_R_FORWARDED, bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
