/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing: Ethernet, one optional 802.1Q tag, IPv4 (with options),
 * IPv6 (with a bounded walk over extension headers), and the ports of TCP
 * and UDP. The parser fills a struct xdsr_pkt and reports a verdict reason
 * when the packet cannot be load balanced; it never writes to the packet.
 */
#ifndef XDSR_PARSING_H
#define XDSR_PARSING_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "xdsr_kern_user.h"

#define XDSR_PARSE_OK (-1)

/* From the kernel's net/ip.h, which user space headers do not carry. */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* What the program needs to know about a packet once it is parsed. */
struct xdsr_pkt {
	union {
		struct xdsr_svc_key key; /* destination side: VIP, port, proto, segment */
		__u64 key_words[3];      /* the same, as the index hashes and compares it */
	};
	__u64 hash_words[5];     /* flow-hash input, see hashing.h */
	__u32 n_words;           /* 2 for IPv4, 5 for IPv6 */
	__u32 ports;             /* first 32 bits of TCP/UDP, 0 if none */
	__u16 tci;               /* host order, valid when tagged */
	__u8 tagged;
	__u8 fragment;
};

/* b is the interface MAC from .rodata: it must be read through a volatile
 * pointer, or clang folds the zero initializer in as a constant. */
static __always_inline int mac_equal(const __u8 *a, const volatile __u8 *b)
{
	return *(const __u32 *)a == *(const volatile __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const volatile __u16 *)(b + 4);
}

/* Minimum header sizes that make a TCP or UDP packet well formed. */
static __always_inline int l4_min_len(__u8 proto)
{
	if (proto == IPPROTO_TCP)
		return sizeof(struct tcphdr);
	if (proto == IPPROTO_UDP)
		return sizeof(struct udphdr);
	return 0;
}

/*
 * Read the ports of a non-fragmented TCP or UDP packet into the key and the
 * hash input. Other protocols are looked up with port 0 and hashed on
 * addresses and protocol only.
 */
static __always_inline int parse_l4(void *l4, void *data_end, struct xdsr_pkt *pkt)
{
	__u8 proto = pkt->key.proto;

	if (pkt->fragment || (proto != IPPROTO_TCP && proto != IPPROTO_UDP)) {
		pkt->key.port = 0;
		pkt->ports = 0;
		return XDSR_PARSE_OK;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return XDSR_R_MALFORMED;
		if (th->doff < 5 || l4 + th->doff * 4 > data_end)
			return XDSR_R_MALFORMED;
	} else {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return XDSR_R_MALFORMED;
	}
	/* Source and destination port sit in the same place in both headers. */
	pkt->key.port = ((struct udphdr *)l4)->dest;
	pkt->ports = *(__u32 *)l4;
	return XDSR_PARSE_OK;
}

static __always_inline int parse_ipv4(void *l3, void *data_end, struct xdsr_pkt *pkt)
{
	struct iphdr *iph = l3;
	__u32 hdr_len;

	if ((void *)(iph + 1) > data_end)
		return XDSR_R_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return XDSR_R_MALFORMED;
	hdr_len = iph->ihl * 4;
	if (l3 + hdr_len > data_end)
		return XDSR_R_MALFORMED;
	if (bpf_ntohs(iph->tot_len) < hdr_len || l3 + bpf_ntohs(iph->tot_len) > data_end)
		return XDSR_R_MALFORMED;

	/* ::ffff:a.b.c.d */
	__builtin_memset(pkt->key.addr, 0, 10);
	pkt->key.addr[10] = 0xff;
	pkt->key.addr[11] = 0xff;
	__builtin_memcpy(&pkt->key.addr[12], &iph->daddr, 4);
	pkt->key.proto = iph->protocol;
	pkt->fragment = (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;

	pkt->hash_words[0] = (__u64)iph->saddr | (__u64)iph->daddr << 32;
	pkt->n_words = 2;
	return parse_l4(l3 + hdr_len, data_end, pkt);
}

#ifndef NEXTHDR_HOP
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#endif

struct ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-octet units << 3 | flags, M in bit 0 */
	__be32 identification;
};

static __always_inline int is_ipv6_ext(__u8 nexthdr)
{
	return nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_ROUTING ||
	       nexthdr == NEXTHDR_FRAGMENT || nexthdr == NEXTHDR_AUTH || nexthdr == NEXTHDR_DEST;
}

static __always_inline int parse_ipv6(void *l3, void *data_end, struct xdsr_pkt *pkt)
{
	struct ipv6hdr *ip6h = l3;
	void *pos = l3 + sizeof(*ip6h);
	__u8 nexthdr;

	if ((void *)(ip6h + 1) > data_end)
		return XDSR_R_MALFORMED;
	if (ip6h->version != 6)
		return XDSR_R_MALFORMED;
	if (pos + bpf_ntohs(ip6h->payload_len) > data_end)
		return XDSR_R_MALFORMED;

	nexthdr = ip6h->nexthdr;
#pragma unroll
	for (int i = 0; i < XDSR_MAX_IPV6_EXT; i++) {
		if (!is_ipv6_ext(nexthdr))
			break;
		if (nexthdr == NEXTHDR_FRAGMENT) {
			struct ipv6_frag *fh = pos;

			if ((void *)(fh + 1) > data_end)
				return XDSR_R_MALFORMED;
			/* An atomic fragment (offset 0, no M flag) is a whole packet. */
			if (fh->frag_off & bpf_htons(0xfff9))
				pkt->fragment = 1;
			nexthdr = fh->nexthdr;
			pos = fh + 1;
		} else {
			__u8 *eh = pos;
			__u32 len;

			if ((void *)(eh + 2) > data_end)
				return XDSR_R_MALFORMED;
			/* AH counts its length in 4-octet units minus 2, the others
			 * in 8-octet units not counting the first. */
			if (nexthdr == NEXTHDR_AUTH)
				len = (eh[1] + 2) * 4;
			else
				len = (eh[1] + 1) * 8;
			nexthdr = eh[0];
			pos += len;
		}
	}
	if (is_ipv6_ext(nexthdr))
		return XDSR_R_UNSUPPORTED;

	__builtin_memcpy(pkt->key.addr, &ip6h->daddr, 16);
	pkt->key.proto = nexthdr;
	__builtin_memcpy(&pkt->hash_words[0], &ip6h->saddr, 16);
	__builtin_memcpy(&pkt->hash_words[2], &ip6h->daddr, 16);
	pkt->n_words = 5;
	return parse_l4(pos, data_end, pkt);
}

/*
 * Parse a frame. Returns XDSR_PARSE_OK with pkt filled, or the reason for
 * the verdict the program must take instead of load balancing.
 */
static __always_inline int parse_packet(void *data, void *data_end, const volatile __u8 *own_mac,
					struct xdsr_pkt *pkt)
{
	struct ethhdr *eth = data;
	void *l3 = data + sizeof(*eth);
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return XDSR_R_MALFORMED;
	/* Frames a switch floods to us (unknown unicast, broadcast) belong to
	 * someone else: acting on them would duplicate traffic another LBN of
	 * the group already forwards. */
	if (!mac_equal(eth->h_dest, own_mac))
		return XDSR_R_NOT_FOR_US;

	proto = eth->h_proto;
	pkt->tagged = 0;
	pkt->tci = 0;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = l3;

		if ((void *)(vh + 1) > data_end)
			return XDSR_R_MALFORMED;
		pkt->tagged = 1;
		pkt->tci = bpf_ntohs(vh->tci);
		proto = vh->encap_proto;
		l3 = vh + 1;
	}
	pkt->key.seg_type = XDSR_SEG_VLAN;
	pkt->key.seg_id = pkt->tci & 0x0fff;
	pkt->fragment = 0;

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(l3, data_end, pkt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(l3, data_end, pkt);
	return XDSR_R_NOT_IP;
}

#endif /* XDSR_PARSING_H */
