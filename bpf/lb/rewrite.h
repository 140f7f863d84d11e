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

#endif /* XDSR_REWRITE_H */
