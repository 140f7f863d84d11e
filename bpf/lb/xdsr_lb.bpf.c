// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The LBN core: stateless L2 direct server return in XDP.
 *
 * For a frame addressed to this interface: parse it, find the service by
 * (VIP, destination port, protocol, address family, segment) in the service
 * index, hash the flow onto a slot of the service's Maglev table, and send
 * the frame back out (XDP_TX) with the backend's MAC and VLAN. A VXLAN or
 * Geneve frame to this node's tunnel endpoint is keyed by its inner
 * destination and its VNI, and re-encapsulated towards the backend's tunnel
 * endpoint (rewrite_tunnel). An ICMP
 * "fragmentation needed" or "packet too big" about a VIP's reply goes the
 * way of the flow it quotes (parsing.h), so path-MTU discovery works for
 * the backends. Every LBN of a group holds identical tables, so the
 * router's ECMP may hand a flow to any of them.
 * Anything that is not a service's traffic goes to the host's stack
 * untouched.
 *
 * Every map lookup here is one the verifier inlines into a few loads, and the
 * data a packet touches is three cache lines (index entry, slot chunk,
 * backend; a tunnel backend with an IPv4 endpoint is one line too): see
 * maps.h and docs/dataplane.md.
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
 * emit their complete BTF: libbpf needs the index entry's size for the inner
 * map template, and tests/dataplane/test_abi.py checks the Python mirror
 * against it. libbpf skips the section, so it costs no map.
 */
struct xdsr_abi_types {
	struct xdsr_svc_entry entry;
	struct xdsr_sel sel;
	union xdsr_slot_chunk chunk;
	struct xdsr_backend backend;
	struct xdsr_backend_hop hop;
	struct xdsr_backend_vtep vtep;
	struct xdsr_prog_cfg cfg;
	struct xdsr_counter counter;
	struct xdsr_meta meta;
	enum xdsr_abi abi;
	enum xdsr_seg_type seg_type;
	enum xdsr_family family;
	enum xdsr_layout layout;
	enum xdsr_svc_flags flags;
	enum xdsr_reason reason;
	enum xdsr_probe probe;
	enum xdsr_vtep_families vtep_families;
};
struct xdsr_abi_types xdsr_abi_anchor SEC(".xdsr_abi");

/*
 * The overlay parser as a global function: the verifier checks it once, on
 * its own, instead of once for every way the outer parse can end (inlined,
 * the two parsers' paths multiplied past the verifier's limit). Only tunnel
 * frames pay the call.
 */
__attribute__((noinline)) int xdsr_overlay(struct xdp_md *ctx, struct xdsr_pkt *pkt)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (!pkt)
		return XDSR_R_MALFORMED;
	return parse_overlay(data, data_end, &xdsr_cfg, pkt);
}

/* A probe's frame (see XDSR_PROBE_MARK): judged like any other, never counted. */
static __always_inline int is_probe(const struct xdp_md *ctx)
{
	void *meta = (void *)(long)ctx->data_meta;
	void *data = (void *)(long)ctx->data;

	if (meta + sizeof(__u32) > data)
		return 0;
	return *(__u32 *)meta == XDSR_PROBE_MARK;
}

static __always_inline int verdict(__u32 reason, __u64 bytes, int quiet)
{
	if (!quiet)
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

static __always_inline int key_equal(const struct xdsr_svc_entry *e, const __u64 *k)
{
	const __u64 *ek = (const __u64 *)&e->key;

	return ek[0] == k[0] && ek[1] == k[1] && ek[2] == k[2];
}

/* Probe one index: linear probing from the key's home bucket until the key,
 * an empty bucket, or the probe limit the control side guarantees every key
 * is within. A macro rather than a function so that each index map gets
 * call sites of its own, which the verifier can inline. */
#define PROBE_INDEX(map, key_words, bucket, found)                             \
	do {                                                                   \
		_Pragma("unroll") for (int i = 0; i < XDSR_INDEX_PROBES; i++) {  \
			const struct xdsr_svc_entry *e_ = bpf_map_lookup_elem(map, &bucket); \
			if (!e_ || !(e_->flags & XDSR_SVC_USED))               \
				break;                                         \
			if (key_equal(e_, key_words)) {                        \
				found = e_;                                    \
				break;                                         \
			}                                                      \
			bucket = (bucket + 1) & xdsr_cfg.index_mask;           \
		}                                                              \
	} while (0)

/* The service's entry in the live index, or NULL. */
static __always_inline const struct xdsr_svc_entry *find_service(const struct xdsr_pkt *pkt)
{
	const struct xdsr_svc_entry *found = 0;
	const struct xdsr_sel *sel;
	__u32 zero = 0, bucket;

	sel = bpf_map_lookup_elem(&xdsr_sel, &zero);
	if (!sel)
		return 0;
	bucket = index_hash(pkt->key_words) & xdsr_cfg.index_mask;
	if (sel->live)
		PROBE_INDEX(&xdsr_index1, pkt->key_words, bucket, found);
	else
		PROBE_INDEX(&xdsr_index0, pkt->key_words, bucket, found);
	return found;
}

/* The backend's entry in xdsr_backends, and its index there (*at). */
static __always_inline const struct xdsr_backend *pick_backend(const struct xdsr_svc_entry *e,
							       struct xdsr_pkt *pkt, __u32 *at)
{
	const union xdsr_slot_chunk *chunk;
	__u32 hash, slot, idx, b;
	__u64 proto_vid;

	/* Fragments and other protocols hash without ports (pkt->ports is 0). */
	proto_vid = (__u64)(((__u32)pkt->vid << 16) | pkt->key.proto) << 32;
	if (pkt->n_words == 2)
		pkt->hash_words[1] = pkt->ports | proto_vid;
	else
		pkt->hash_words[4] = pkt->ports | proto_vid;
	hash = flow_hash(pkt->hash_words, pkt->n_words, xdsr_cfg.hash_seed);
	slot = hash_to_slot(hash, e->table_size);

	if (e->flags & XDSR_SVC_NARROW) {
		idx = e->slot_base + slot / XDSR_CHUNK_SIZE;
		chunk = bpf_map_lookup_elem(&xdsr_slots, &idx);
		if (!chunk)
			return 0;
		b = chunk->narrow[slot % XDSR_CHUNK_SIZE];
	} else {
		idx = e->slot_base + slot / (XDSR_CHUNK_SIZE / 2);
		chunk = bpf_map_lookup_elem(&xdsr_slots, &idx);
		if (!chunk)
			return 0;
		b = chunk->wide[slot % (XDSR_CHUNK_SIZE / 2)];
	}
	/* An empty table (every backend drained) holds the "none" marker. */
	if (b >= e->n_backends)
		return 0;
	/* Tunnel backends take several entries each (xdsr_kern_user.h); a
	 * VLAN frame's backend is entry b, with no load of the stride. */
	idx = e->backend_base + (pkt->overlay ? b * e->backend_stride : b);
	*at = idx;
	return bpf_map_lookup_elem(&xdsr_backends, &idx);
}

SEC("xdp")
int xdsr_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	const struct xdsr_svc_entry *svc;
	const struct xdsr_backend *be;
	struct xdsr_pkt pkt;
	int reason, detail;
	__u32 at = 0;
	int quiet = is_probe(ctx);
	int fast = 0;

	/* The common tunnel frame first (parse_tunnel4_fast); every other one,
	 * and any the fast path doubts, through the general parsers. */
	fast = parse_tunnel4_fast(data, data_end, &xdsr_cfg, &pkt) == XDSR_PARSE_OK;
	if (!fast) {
		reason = parse_packet(data, data_end, xdsr_cfg.mac, &pkt);
		if (reason != XDSR_PARSE_OK)
			return verdict(reason, bytes, quiet);
		/* Only UDP to the tunnel ports goes further: VLAN traffic pays a
		 * compare or two. */
		if (pkt.key.proto == IPPROTO_UDP && !pkt.icmp && is_tunnel(&pkt, &xdsr_cfg)) {
			reason = xdsr_overlay(ctx, &pkt);
			if (reason != XDSR_PARSE_OK)
				return verdict(reason, bytes, quiet);
		}
	}

	svc = find_service(&pkt);
	if (!svc)
		return verdict(XDSR_R_NO_SERVICE, bytes, quiet);
	if (pkt.critical)
		return verdict(XDSR_R_UNSUPPORTED, bytes, quiet);

	be = pick_backend(svc, &pkt, &at);
	if (!be)
		return verdict(XDSR_R_NO_BACKEND, bytes, quiet);

	if (pkt.overlay) {
		const struct xdsr_backend_hop *hop;
		const struct xdsr_backend_vtep *ep = 0;
		__u32 i1 = at + 1, i2 = at + 2;

		hop = bpf_map_lookup_elem(&xdsr_backends, &i1);
		if (!hop)
			return verdict(XDSR_R_TX_ERROR, bytes, quiet);
		reason = fast ? rewrite_tunnel4_fast(ctx, be, hop, &xdsr_cfg) : XDSR_PARSE_NEXT;
		if (reason == XDSR_PARSE_NEXT) {
			/* Only an IPv6 endpoint has a third entry. */
			if (hop->family == XDSR_FAMILY_IPV6)
				ep = bpf_map_lookup_elem(&xdsr_backends, &i2);
			reason = rewrite_tunnel(ctx, &pkt, be, hop, ep, &xdsr_cfg);
		}
		/* No detail: the service's counter counts these frames. */
		detail = -1;
	} else {
		reason = rewrite_l2(ctx, &pkt, be, xdsr_cfg.mac, &detail);
	}
	if (reason != XDSR_PARSE_OK)
		return verdict(reason, bytes, quiet);

	if (!quiet) {
		count(&xdsr_svc_stats, svc->stats_id, bytes);
		if (pkt.fragment)
			count_reason(XDSR_R_FRAGMENT, bytes);
		if (pkt.icmp)
			count_reason(XDSR_R_ICMP_ERROR, bytes);
		if (detail >= 0)
			count_reason(detail, bytes);
	}
	return verdict(XDSR_R_FORWARDED, bytes, quiet);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
