/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The L2DSR rewrite: new destination MAC (the backend), new source MAC (this
 * interface) and the backend's VLAN. Addresses and ports stay as they are,
 * so no checksum changes. The tag's PCP and DEI bits are kept.
 *
 * A pushed or popped tag needs no memmove: both MACs are rewritten anyway,
 * so after moving the start of the frame by 4 bytes the program writes the
 * new Ethernet header in place and the EtherType of the payload is already
 * where it belongs.
 */
#ifndef XDSR_REWRITE_H
#define XDSR_REWRITE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "parsing.h"
#include "xdsr_kern_user.h"

/* src is the interface MAC in .rodata, read through volatile (see mac_equal). */
static __always_inline void write_macs(__u8 *frame, const __u8 *dst, const volatile __u8 *src)
{
	*(__u32 *)frame = *(const __u32 *)dst;
	*(__u16 *)(frame + 4) = *(const __u16 *)(dst + 4);
	*(__u32 *)(frame + 6) = *(const volatile __u32 *)src;
	*(__u16 *)(frame + 10) = *(const volatile __u16 *)(src + 4);
}

/* Returns XDSR_PARSE_OK, or XDSR_R_TX_ERROR when the frame could not be
 * resized. On success, *detail is XDSR_R_VLAN_PUSH, XDSR_R_VLAN_POP or -1. */
static __always_inline int rewrite_l2(struct xdp_md *ctx, const struct xdsr_pkt *pkt,
				      const struct xdsr_backend *be, const volatile __u8 *own_mac,
				      int *detail)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 vid = be->vid & 0x0fff;
	__u8 *eth;

	*detail = -1;
	if (pkt->tagged && vid) {
		struct vlan_hdr *vh = data + sizeof(struct ethhdr);

		if ((void *)(vh + 1) > data_end)
			return XDSR_R_TX_ERROR;
		vh->tci = bpf_htons((pkt->tci & 0xf000) | vid);
		eth = data;
	} else if (pkt->tagged) {
		/* Pop: the payload EtherType at offset 16 becomes the Ethernet
		 * header's once the frame starts 4 bytes later. */
		if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct vlan_hdr)))
			return XDSR_R_TX_ERROR;
		*detail = XDSR_R_VLAN_POP;
		eth = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
	} else if (vid) {
		struct vlan_hdr *vh;

		if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct vlan_hdr)))
			return XDSR_R_TX_ERROR;
		*detail = XDSR_R_VLAN_PUSH;
		eth = (void *)(long)ctx->data;
		data_end = (void *)(long)ctx->data_end;
		vh = (void *)(eth + sizeof(struct ethhdr));
		if ((void *)(vh + 1) > data_end)
			return XDSR_R_TX_ERROR;
		((struct ethhdr *)eth)->h_proto = bpf_htons(ETH_P_8021Q);
		vh->tci = bpf_htons(vid);
		/* vh->encap_proto is the original EtherType, already in place. */
	} else {
		eth = data;
	}
	if ((void *)(eth + sizeof(struct ethhdr)) > data_end)
		return XDSR_R_TX_ERROR;
	write_macs(eth, be->mac, own_mac);
	return XDSR_PARSE_OK;
}

/*
 * One's-complement arithmetic for the checksum updates of a re-encapsulated
 * frame (RFC 1624: HC' = ~(~HC + ~m + m')). Words are summed as they lie in
 * memory: the sum is byte-order independent as long as every word is taken
 * the same way.
 */
static __always_inline __u32 csum_delta16(__u32 acc, __u16 old, __u16 new)
{
	return acc + (__u16)~old + new;
}

static __always_inline __u16 csum_apply(__u16 check, __u32 delta)
{
	__u32 s = (__u16)~check + delta;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s;
}

/*
 * Send an overlay frame to a backend behind a tunnel: inner destination MAC
 * := the backend's, inner source MAC := this interface's (as on a VLAN: a
 * backend's VXLAN device learns inner source MACs, and must not learn the
 * tenant router's MAC at this node), VNI := the backend's, outer
 * destination := its endpoint, outer source := this node's endpoint (the
 * frame's outer destination, checked by is_tunnel), outer MACs := the
 * underlay next hop's and this interface's. The outer UDP ports, the
 * underlay tag, TTL/hop limit and everything else stay as they were.
 *
 * Only the addresses, the VNI and the inner MACs change, so the checksums
 * are updated, not recomputed: the outer IPv4 header checksum by the
 * address change, and a UDP checksum that was set by every changed word
 * (pseudo header included), which keeps a correct one correct (RFC 6935/6936
 * for IPv6). A zero UDP checksum stays zero: over IPv4 it means none (RFC
 * 7348, 8926 allow it); over IPv6 the sender used the zero-checksum mode of
 * RFC 6935 for this tunnel, and the receiving endpoint must accept it.
 *
 * Since the old destination is this node's endpoint and so is the new
 * source, the sum over the two addresses changes by (new destination - old
 * source) alone.
 */
static __always_inline int rewrite_tunnel(struct xdp_md *ctx, const struct xdsr_pkt *pkt,
					  const struct xdsr_backend *be, const struct xdsr_backend_hop *hop,
					  const struct xdsr_backend_vtep *ep, const volatile struct xdsr_prog_cfg *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u16 *src, *dst, *w;
	const __u16 *nw;
	__u32 addr = 0, all;
	__u8 *th, *inner;
	struct udphdr *uh;
	int n, i;

	__u32 l3_off = pkt->outer_l3, udp_off = pkt->udp_off, tun_off = pkt->tun_off, inner_off = pkt->inner_off;

	if (hop->family != pkt->overlay)
		return XDSR_R_TX_ERROR;
	/* parse_overlay set these; the bounds are for the verifier, which does
	 * not follow them through xdsr_overlay's call. */
	if (l3_off > XDSR_MAX_OUTER_OFF || udp_off > XDSR_MAX_OUTER_OFF || tun_off > XDSR_MAX_INNER_OFF ||
	    inner_off > XDSR_MAX_INNER_OFF)
		return XDSR_R_TX_ERROR;
	if (pkt->overlay == XDSR_FAMILY_IPV4) {
		struct iphdr *iph = data + l3_off;

		if ((void *)(iph + 1) > data_end)
			return XDSR_R_TX_ERROR;
		src = (__u16 *)&iph->saddr;
		nw = (const __u16 *)hop->addr4;
		addr = csum_delta16(addr, src[0], nw[0]);
		addr = csum_delta16(addr, src[1], nw[1]);
		iph->daddr = *(const __u32 *)hop->addr4;
		iph->saddr = *(const volatile __u32 *)&cfg->vtep4[12];
		iph->check = csum_apply(iph->check, addr);
	} else {
		struct ipv6hdr *ip6h = data + l3_off;

		/* The caller reads the third entry for an IPv6 endpoint. */
		if (!ep || (void *)(ip6h + 1) > data_end)
			return XDSR_R_TX_ERROR;
		src = (__u16 *)&ip6h->saddr;
		nw = (const __u16 *)ep->addr;
#pragma unroll
		for (i = 0; i < 8; i++)
			addr = csum_delta16(addr, src[i], nw[i]);
		__builtin_memcpy(&ip6h->daddr, ep->addr, 16);
		((__u64 *)&ip6h->saddr)[0] = ((const volatile __u64 *)cfg->vtep6)[0];
		((__u64 *)&ip6h->saddr)[1] = ((const volatile __u64 *)cfg->vtep6)[1];
	}

	uh = data + udp_off;
	th = data + tun_off;
	inner = data + inner_off;
	if (data + sizeof(struct ethhdr) > data_end || (void *)(uh + 1) > data_end ||
	    (void *)(th + XDSR_TUN_HDR) > data_end ||
	    (void *)(inner + sizeof(struct ethhdr)) > data_end)
		return XDSR_R_TX_ERROR;

	/* VNI: bytes 4-6 of both headers; byte 7 (reserved) stays. Inner
	 * MACs: the tunnel header and its options are whole words, so they lie
	 * on even offsets of the UDP datagram. Without a UDP checksum (the
	 * common case over IPv4) there is nothing to add up. */
	w = (__u16 *)(th + 4);
	dst = (__u16 *)inner;
	if (!uh->check) {
		th[4] = be->vni >> 16;
		th[5] = be->vni >> 8;
		th[6] = be->vni;
		write_macs(inner, be->mac, cfg->mac);
	} else {
		__u16 old[8];

		old[0] = w[0];
		old[1] = w[1];
#pragma unroll
		for (n = 0; n < 6; n++)
			old[n + 2] = dst[n];
		th[4] = be->vni >> 16;
		th[5] = be->vni >> 8;
		th[6] = be->vni;
		write_macs(inner, be->mac, cfg->mac);
		all = addr;
		all = csum_delta16(all, old[0], w[0]);
		all = csum_delta16(all, old[1], w[1]);
#pragma unroll
		for (n = 0; n < 6; n++)
			all = csum_delta16(all, old[n + 2], dst[n]);
		uh->check = csum_apply(uh->check, all);
		if (!uh->check)
			uh->check = 0xffff;
	}
	write_macs(data, hop->mac, cfg->mac);
	return XDSR_PARSE_OK;
}

/*
 * rewrite_tunnel for a frame parse_tunnel4_fast took: every header at its
 * fixed offset, so one bounds check, and no UDP checksum to update: a frame
 * that carries one is left as it is (XDSR_PARSE_NEXT) for rewrite_tunnel.
 */
static __always_inline int rewrite_tunnel4_fast(struct xdp_md *ctx, const struct xdsr_backend *be,
					       const struct xdsr_backend_hop *hop, const volatile struct xdsr_prog_cfg *cfg)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct udphdr *uh = data + XDSR_FAST_UDP;
	__u8 *th = data + XDSR_FAST_TUN;
	__u8 *inner = data + XDSR_FAST_INNER;
	__u16 *src = (__u16 *)&iph->saddr;
	const __u16 *nw = (const __u16 *)hop->addr4;
	__u32 addr;

	if ((void *)(inner + sizeof(struct ethhdr)) > data_end || hop->family != XDSR_FAMILY_IPV4)
		return XDSR_R_TX_ERROR;
	if (uh->check)
		return XDSR_PARSE_NEXT;
	addr = csum_delta16(0, src[0], nw[0]);
	addr = csum_delta16(addr, src[1], nw[1]);
	iph->daddr = *(const __u32 *)hop->addr4;
	iph->saddr = *(const volatile __u32 *)&cfg->vtep4[12];
	iph->check = csum_apply(iph->check, addr);
	/* The VNI and the reserved byte after it, as one word. */
	*(__be32 *)(th + 4) = bpf_htonl(be->vni << 8 | th[7]);
	write_macs(inner, be->mac, cfg->mac);
	write_macs(data, hop->mac, cfg->mac);
	return XDSR_PARSE_OK;
}

#endif /* XDSR_REWRITE_H */
