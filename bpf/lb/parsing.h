/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing: Ethernet, one optional 802.1Q tag, IPv4 (with options),
 * IPv6 (with a bounded walk over extension headers), and the ports of TCP
 * and UDP; then, for UDP to this node's tunnel endpoint on the VXLAN or
 * Geneve port, the tunnel header and the inner Ethernet, IP and TCP/UDP
 * (parse_overlay). The parser fills a struct xdsr_pkt and reports a verdict
 * reason when the packet cannot be load balanced; it never writes to the
 * packet.
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

/* parse_icmp_*: the packet is not an ICMP error the program steers; go on
 * with the ordinary lookup. */
#define XDSR_PARSE_NEXT (-2)

/* What the program needs to know about a packet once it is parsed. */
struct xdsr_pkt {
	union {
		struct xdsr_svc_key key; /* destination side: VIP, port, proto, family, segment */
		__u64 key_words[3];      /* the same, as the index hashes and compares it */
	};
	__u64 hash_words[5];     /* flow-hash input, see hashing.h */
	__u32 n_words;           /* 2 for IPv4, 5 for IPv6 */
	__u32 ports;             /* first 32 bits of TCP/UDP, 0 if none */
	__u16 tci;               /* host order, valid when tagged */
	__u16 vid;               /* tci's VID, 0 when untagged */
	__u16 l3_len;            /* IP header and extension headers */
	__u16 l4_len;            /* what the IP header says follows them */
	__u8 tagged;
	__u8 fragment;
	__u8 icmp;               /* an ICMP "too big" steered by the flow it quotes */
	/* Overlay frames only (see parse_overlay): */
	__u8 overlay;            /* 0, or the outer (underlay) family */
	__u8 critical;           /* Geneve C bit: options we would have to understand */
	__u16 outer_l3;          /* offsets from the frame's start */
	__u16 udp_off;
	__u16 tun_off;
	__u16 inner_off;
};

/* b is the interface MAC from .rodata: it must be read through a volatile
 * pointer, or clang folds the zero initializer in as a constant. */
static __always_inline int mac_equal(const __u8 *a, const volatile __u8 *b)
{
	return *(const __u32 *)a == *(const volatile __u32 *)b &&
	       *(const __u16 *)(a + 4) == *(const volatile __u16 *)(b + 4);
}

/*
 * Read the ports of a non-fragmented TCP or UDP packet into the key and the
 * hash input. Other protocols are looked up with port 0 and hashed on
 * addresses and protocol only. l4_len is what the IP header says follows
 * (the frame may be longer: Ethernet pads short frames), so a header that
 * lies only in the padding is truncated.
 */
static __always_inline int parse_l4(void *l4, void *data_end, __u32 l4_len, struct xdsr_pkt *pkt)
{
	__u8 proto = pkt->key.proto;

	if (pkt->fragment || (proto != IPPROTO_TCP && proto != IPPROTO_UDP)) {
		pkt->key.port = 0;
		pkt->ports = 0;
		return XDSR_PARSE_OK;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if (l4_len < sizeof(*th) || (void *)(th + 1) > data_end)
			return XDSR_R_MALFORMED;
		if (th->doff < 5 || th->doff * 4 > l4_len)
			return XDSR_R_MALFORMED;
	} else {
		struct udphdr *uh = l4;
		__u32 ulen;

		if (l4_len < sizeof(*uh) || (void *)(uh + 1) > data_end)
			return XDSR_R_MALFORMED;
		ulen = bpf_ntohs(uh->len);
		if (ulen < sizeof(*uh) || ulen > l4_len)
			return XDSR_R_MALFORMED;
	}
	/* Port 0 is no service's: its key names the fragments' entry. */
	if (!((struct udphdr *)l4)->dest)
		return XDSR_R_NO_SERVICE;
	/* Source and destination port sit in the same place in both headers. */
	pkt->key.port = ((struct udphdr *)l4)->dest;
	pkt->ports = *(__u32 *)l4;
	return XDSR_PARSE_OK;
}

/* RFC 792 and 4443: an ICMP error quotes at least the offending packet's IP
 * header and the first 8 bytes of its payload. */
#define XDSR_ICMP_HDR 8
#define XDSR_QUOTED_L4 8
#define XDSR_ICMP_FRAG_NEEDED_TYPE 3
#define XDSR_ICMP_FRAG_NEEDED_CODE 4
#define XDSR_ICMPV6_TOO_BIG 2

/*
 * The quoted packet is a backend's reply, VIP:port -> client:port, that a
 * router on the way to the client could not forward without fragmenting.
 * Look the service up by the quoted source and hash the quoted flow
 * reversed, so the error reaches the backend that sent the reply: the
 * client's packets of that flow hash to it. inner_ports points at the
 * quoted TCP/UDP ports; the caller has filled the hash's address words.
 */
static __always_inline int steer_icmp(const __be16 *inner_ports, __u8 inner_proto, struct xdsr_pkt *pkt)
{
	if (inner_proto != IPPROTO_TCP && inner_proto != IPPROTO_UDP)
		return XDSR_PARSE_NEXT;
	if (!inner_ports[0] || !inner_ports[1])
		return XDSR_PARSE_NEXT;
	pkt->key.port = inner_ports[0];
	pkt->key.proto = inner_proto;
	pkt->ports = (__u32)inner_ports[1] | (__u32)inner_ports[0] << 16;
	pkt->icmp = 1;
	return XDSR_PARSE_OK;
}

/* An ICMP "fragmentation needed" to a VIP, quoting a packet the VIP sent. */
static __always_inline int parse_icmp4(void *l4, void *data_end, __u32 l4_len, const struct iphdr *outer,
				       struct xdsr_pkt *pkt)
{
	const __u8 *ic = l4;
	struct iphdr *in = l4 + XDSR_ICMP_HDR;
	__be16 *ports;
	__u32 hdr_len;

	if (l4_len < XDSR_ICMP_HDR + sizeof(*in) + XDSR_QUOTED_L4 || (void *)(in + 1) > data_end)
		return XDSR_PARSE_NEXT;
	if (ic[0] != XDSR_ICMP_FRAG_NEEDED_TYPE || ic[1] != XDSR_ICMP_FRAG_NEEDED_CODE)
		return XDSR_PARSE_NEXT;
	if (in->version != 4 || in->ihl < 5 || in->saddr != outer->daddr)
		return XDSR_PARSE_NEXT;
	/* A later fragment quotes no ports. */
	if (in->frag_off & bpf_htons(IP_OFFSET))
		return XDSR_PARSE_NEXT;
	hdr_len = in->ihl * 4;
	if (l4_len < XDSR_ICMP_HDR + hdr_len + XDSR_QUOTED_L4)
		return XDSR_PARSE_NEXT;
	ports = (void *)in + hdr_len;
	if ((void *)(ports + 2) > data_end)
		return XDSR_PARSE_NEXT;
	pkt->hash_words[0] = (__u64)in->daddr | (__u64)in->saddr << 32;
	return steer_icmp(ports, in->protocol, pkt);
}

/* An ICMPv6 "packet too big" to a VIP, quoting a packet the VIP sent (with
 * no extension header: replies of the services carry none). */
static __always_inline int parse_icmp6(void *l4, void *data_end, __u32 l4_len, const struct ipv6hdr *outer,
				       struct xdsr_pkt *pkt)
{
	const __u8 *ic = l4;
	struct ipv6hdr *in = l4 + XDSR_ICMP_HDR;
	const __u64 *inner_src, *outer_dst;
	__be16 *ports = (void *)(in + 1);

	if (l4_len < XDSR_ICMP_HDR + sizeof(*in) + XDSR_QUOTED_L4 || (void *)(ports + 2) > data_end)
		return XDSR_PARSE_NEXT;
	if (ic[0] != XDSR_ICMPV6_TOO_BIG || in->version != 6)
		return XDSR_PARSE_NEXT;
	inner_src = (const __u64 *)&in->saddr;
	outer_dst = (const __u64 *)&outer->daddr;
	if (inner_src[0] != outer_dst[0] || inner_src[1] != outer_dst[1])
		return XDSR_PARSE_NEXT;
	__builtin_memcpy(&pkt->hash_words[0], &in->daddr, 16);
	__builtin_memcpy(&pkt->hash_words[2], &in->saddr, 16);
	return steer_icmp(ports, in->nexthdr, pkt);
}

static __always_inline int parse_ipv4(void *l3, void *data_end, struct xdsr_pkt *pkt)
{
	struct iphdr *iph = l3;
	__u32 hdr_len, tot_len;
	int r;

	if ((void *)(iph + 1) > data_end)
		return XDSR_R_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return XDSR_R_MALFORMED;
	hdr_len = iph->ihl * 4;
	tot_len = bpf_ntohs(iph->tot_len);
	if (l3 + hdr_len > data_end)
		return XDSR_R_MALFORMED;
	if (tot_len < hdr_len || l3 + tot_len > data_end)
		return XDSR_R_MALFORMED;

	/* ::ffff:a.b.c.d */
	__builtin_memset(pkt->key.addr, 0, 10);
	pkt->key.addr[10] = 0xff;
	pkt->key.addr[11] = 0xff;
	__builtin_memcpy(&pkt->key.addr[12], &iph->daddr, 4);
	pkt->key.family = XDSR_FAMILY_IPV4;
	pkt->key.proto = iph->protocol;
	pkt->fragment = (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) != 0;
	pkt->n_words = 2;
	pkt->l3_len = hdr_len;
	pkt->l4_len = tot_len - hdr_len;

	if (iph->protocol == IPPROTO_ICMP && !pkt->fragment) {
		r = parse_icmp4(l3 + hdr_len, data_end, tot_len - hdr_len, iph, pkt);
		if (r != XDSR_PARSE_NEXT)
			return r;
	}
	pkt->hash_words[0] = (__u64)iph->saddr | (__u64)iph->daddr << 32;
	return parse_l4(l3 + hdr_len, data_end, tot_len - hdr_len, pkt);
}

#ifndef NEXTHDR_HOP
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#endif
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
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

/*
 * The extension headers are walked within the payload length. A fragment
 * header ends the walk: what follows it is the fragmentable part, whose
 * headers only the first fragment shows, so its next-header field is the
 * protocol of every fragment of the datagram and all of them take the same
 * way (a datagram whose fragmentable part starts with another extension
 * header is no service's: passed to the host whole).
 */
static __always_inline int parse_ipv6(void *l3, void *data_end, struct xdsr_pkt *pkt)
{
	struct ipv6hdr *ip6h = l3;
	void *pos = l3 + sizeof(*ip6h);
	__u32 payload_len, ext_len = 0;
	__u8 nexthdr;
	int r;

	if ((void *)(ip6h + 1) > data_end)
		return XDSR_R_MALFORMED;
	if (ip6h->version != 6)
		return XDSR_R_MALFORMED;
	payload_len = bpf_ntohs(ip6h->payload_len);
	if (pos + payload_len > data_end)
		return XDSR_R_MALFORMED;
	/* The datagram's length, for parse_overlay, before the walk can fail. */
	pkt->l3_len = sizeof(*ip6h);
	pkt->l4_len = payload_len;

	nexthdr = ip6h->nexthdr;
#pragma unroll
	for (int i = 0; i < XDSR_MAX_IPV6_EXT; i++) {
		if (!is_ipv6_ext(nexthdr))
			break;
		if (nexthdr == NEXTHDR_FRAGMENT) {
			struct ipv6_frag *fh = pos;

			if (ext_len + sizeof(*fh) > payload_len || (void *)(fh + 1) > data_end)
				return XDSR_R_MALFORMED;
			nexthdr = fh->nexthdr;
			pos = fh + 1;
			ext_len += sizeof(*fh);
			/* An atomic fragment (offset 0, no M flag) is a whole packet. */
			if (fh->frag_off & bpf_htons(0xfff9)) {
				pkt->fragment = 1;
				break;
			}
		} else {
			__u8 *eh = pos;
			__u32 len;

			if (ext_len + 2 > payload_len || (void *)(eh + 2) > data_end)
				return XDSR_R_MALFORMED;
			/* AH counts its length in 4-octet units minus 2, the others
			 * in 8-octet units not counting the first. */
			if (nexthdr == NEXTHDR_AUTH)
				len = (eh[1] + 2) * 4;
			else
				len = (eh[1] + 1) * 8;
			if (ext_len + len > payload_len)
				return XDSR_R_MALFORMED;
			nexthdr = eh[0];
			pos += len;
			ext_len += len;
		}
	}
	if (!pkt->fragment && is_ipv6_ext(nexthdr))
		return XDSR_R_UNSUPPORTED;

	__builtin_memcpy(pkt->key.addr, &ip6h->daddr, 16);
	pkt->key.family = XDSR_FAMILY_IPV6;
	pkt->key.proto = nexthdr;
	pkt->n_words = 5;
	pkt->l3_len = sizeof(*ip6h) + ext_len;
	pkt->l4_len = payload_len - ext_len;
	if (nexthdr == IPPROTO_ICMPV6 && !pkt->fragment) {
		r = parse_icmp6(pos, data_end, payload_len - ext_len, ip6h, pkt);
		if (r != XDSR_PARSE_NEXT)
			return r;
	}
	__builtin_memcpy(&pkt->hash_words[0], &ip6h->saddr, 16);
	__builtin_memcpy(&pkt->hash_words[2], &ip6h->daddr, 16);
	return parse_l4(pos, data_end, payload_len - ext_len, pkt);
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
	pkt->vid = pkt->tci & 0x0fff;
	pkt->key.segment = (__u32)XDSR_SEG_VLAN << XDSR_SEG_TYPE_SHIFT | pkt->vid;
	pkt->fragment = 0;
	pkt->icmp = 0;
	pkt->overlay = 0;
	pkt->critical = 0;
	pkt->outer_l3 = pkt->tagged ? sizeof(*eth) + sizeof(struct vlan_hdr) : sizeof(*eth);

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(l3, data_end, pkt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(l3, data_end, pkt);
	return XDSR_R_NOT_IP;
}

/* Overlays: RFC 7348 (VXLAN), RFC 8926 (Geneve). */
#define XDSR_TUN_HDR 8            /* VXLAN header; Geneve's fixed part */
#define XDSR_VXLAN_I 0x08         /* VXLAN flags: the VNI is valid */
#define XDSR_GENEVE_O 0x80        /* Geneve: control (OAM) frame */
#define XDSR_GENEVE_C 0x40        /* Geneve: critical options present */
#define XDSR_ETH_P_TEB 0x6558     /* Geneve protocol: an Ethernet frame */
/* Where the outer UDP header may start, and the tunnel's inner frame: bounds
 * that keep the verifier's packet offsets below 64 KiB. */
#define XDSR_MAX_OUTER_OFF 0x3fff
#define XDSR_MAX_INNER_OFF (XDSR_MAX_OUTER_OFF + 8 + 8 + 252)

/*
 * Is this UDP datagram a tunnel frame for this node to parse? Called only
 * for non-fragmented UDP that is not a steered ICMP error, so VLAN traffic
 * pays one or two compares of the port.
 */
static __always_inline int is_tunnel(const struct xdsr_pkt *pkt, const volatile struct xdsr_prog_cfg *cfg)
{
	const volatile __u64 *vtep;

	/* A port of 0 in the config means that tunnel is off, and a later
	 * fragment is keyed with port 0: neither may match the other. */
	if (!pkt->key.port || (pkt->key.port != cfg->vxlan_port && pkt->key.port != cfg->geneve_port))
		return 0;
	if (pkt->key.family == XDSR_FAMILY_IPV4) {
		if (!(cfg->vtep_families & XDSR_VTEP_IPV4))
			return 0;
		vtep = (const volatile __u64 *)cfg->vtep4;
	} else {
		if (!(cfg->vtep_families & XDSR_VTEP_IPV6))
			return 0;
		vtep = (const volatile __u64 *)cfg->vtep6;
	}
	/* The outer destination is in the key (IPv4 mapped, as vtep4 is). */
	return pkt->key_words[0] == vtep[0] && pkt->key_words[1] == vtep[1];
}

/*
 * The frame is UDP to this node's tunnel endpoint on the VXLAN or Geneve
 * port (is_tunnel): parse the tunnel header and the inner frame, and key
 * the packet by the inner destination and (VXLAN|GENEVE, VNI). The outer
 * UDP datagram, not the frame, bounds everything inside it: an inner IP
 * length that reaches past it is malformed.
 *
 * Verdicts of the tunnel layer: a cut or invalid header (VXLAN without the
 * I flag, Geneve options longer than the datagram) is malformed; a Geneve
 * frame of an unknown version is unsupported (RFC 8926 3.4: dropped);
 * Geneve control frames (O bit) and payloads other than Ethernet are the
 * host's (no_service). Critical options are judged after the lookup: a
 * frame for a service is dropped as unsupported (the program understands no
 * option, and RFC 8926 3.4 lets an endpoint that parses none drop on the C
 * bit), any other goes to the host like every VNI without a service.
 */
static __always_inline int parse_overlay(void *data, void *data_end, const volatile struct xdsr_prog_cfg *cfg,
					 struct xdsr_pkt *pkt)
{
	__u32 seg_type, tun_len, vni, payload, avail, off;
	struct udphdr *uh;
	__u8 *th, *inner;
	__be16 proto;
	int r;

	off = pkt->outer_l3 + pkt->l3_len;
	/* Bounds the verifier needs; a frame is far shorter (docs: jumbo frames). */
	if (off > XDSR_MAX_OUTER_OFF)
		return XDSR_R_MALFORMED;
	uh = data + off;
	if ((void *)(uh + 1) > data_end)
		return XDSR_R_MALFORMED;
	/* parse_l4 checked 8 <= UDP length <= what the IP header holds. */
	payload = bpf_ntohs(uh->len) - sizeof(*uh);
	th = (void *)(uh + 1);
	if (payload < XDSR_TUN_HDR || (void *)(th + XDSR_TUN_HDR) > data_end)
		return XDSR_R_MALFORMED;
	if (pkt->key.port == cfg->vxlan_port) {
		/* RFC 7348: other flag bits and the reserved fields are ignored. */
		if (!(th[0] & XDSR_VXLAN_I))
			return XDSR_R_MALFORMED;
		seg_type = XDSR_SEG_VXLAN;
		tun_len = XDSR_TUN_HDR;
	} else {
		if (th[0] >> 6)
			return XDSR_R_UNSUPPORTED;
		if ((th[1] & XDSR_GENEVE_O) || *(__be16 *)(th + 2) != bpf_htons(XDSR_ETH_P_TEB))
			return XDSR_R_NO_SERVICE;
		tun_len = XDSR_TUN_HDR + (th[0] & 0x3f) * 4;
		if (payload < tun_len)
			return XDSR_R_MALFORMED;
		pkt->critical = (th[1] & XDSR_GENEVE_C) != 0;
		seg_type = XDSR_SEG_GENEVE;
	}
	vni = (__u32)th[4] << 16 | (__u32)th[5] << 8 | th[6];
	inner = th + tun_len;
	avail = payload - tun_len;
	if (avail < sizeof(struct ethhdr) || (void *)(inner + sizeof(struct ethhdr)) > data_end)
		return XDSR_R_MALFORMED;

	pkt->overlay = pkt->key.family;
	pkt->udp_off = pkt->outer_l3 + pkt->l3_len;
	pkt->tun_off = pkt->udp_off + sizeof(*uh);
	pkt->inner_off = pkt->tun_off + tun_len;
	pkt->key.segment = seg_type << XDSR_SEG_TYPE_SHIFT | vni;
	/* The VNI is in the key: the flow hash carries no segment, as for an
	 * untagged VLAN frame. */
	pkt->vid = 0;
	pkt->fragment = 0;
	pkt->icmp = 0;
	pkt->l3_len = 0;
	pkt->l4_len = 0;
	avail -= sizeof(struct ethhdr);

	proto = ((struct ethhdr *)inner)->h_proto;
	inner += sizeof(struct ethhdr);
	if (proto == bpf_htons(ETH_P_IP))
		r = parse_ipv4(inner, data_end, pkt);
	else if (proto == bpf_htons(ETH_P_IPV6))
		r = parse_ipv6(inner, data_end, pkt);
	else
		return XDSR_R_NOT_IP;
	/* Set once the inner IP header is read, whatever the verdict. */
	if ((__u32)pkt->l3_len + pkt->l4_len > avail)
		return XDSR_R_MALFORMED;
	return r;
}

/*
 * The common overlay frame, Katran-style: VXLAN (or Geneve without options)
 * over untagged IPv4 without options, not a fragment, to this node's
 * endpoint, carrying an untagged IPv4 frame without options, not a
 * fragment, TCP or UDP. Every header then sits at a fixed offset: one
 * bounds check (a second for TCP), fixed-offset loads, none of
 * parse_packet's and parse_overlay's generality, no call. The program tries
 * it before parse_packet. It fills pkt only once every check has passed,
 * exactly as parse_packet and parse_overlay would have
 * (tests/dataplane/test_overlay_packets.py holds both ways to the same
 * bytes); a frame it doubts in any way is XDSR_PARSE_NEXT, for the general
 * parsers to judge. A VLAN frame fails the bounds check (a 64-byte tagged
 * frame) or the EtherType's compare.
 */
#define XDSR_FAST_IP4 14                                /* outer IPv4 */
#define XDSR_FAST_UDP (XDSR_FAST_IP4 + 20)              /* outer UDP */
#define XDSR_FAST_TUN (XDSR_FAST_UDP + 8)               /* VXLAN or Geneve header */
#define XDSR_FAST_INNER (XDSR_FAST_TUN + XDSR_TUN_HDR)  /* inner Ethernet */
#define XDSR_FAST_IP (XDSR_FAST_INNER + 14)             /* inner IPv4 */
#define XDSR_FAST_L4 (XDSR_FAST_IP + 20)                /* inner TCP/UDP */
/* The outer UDP length holds its header, the tunnel's and the inner
 * Ethernet header besides the inner IP datagram. */
#define XDSR_FAST_OVERHEAD (8 + XDSR_TUN_HDR + 14)

static __always_inline int parse_tunnel4_fast(void *data, void *data_end, const volatile struct xdsr_prog_cfg *cfg,
					     struct xdsr_pkt *pkt)
{
	struct ethhdr *eth = data;
	struct iphdr *oip = data + XDSR_FAST_IP4;
	struct udphdr *uh = data + XDSR_FAST_UDP;
	__u8 *th = data + XDSR_FAST_TUN;
	struct ethhdr *ieth = data + XDSR_FAST_INNER;
	struct iphdr *iph = data + XDSR_FAST_IP;
	struct udphdr *l4 = data + XDSR_FAST_L4;
	__u32 ulen, tot_len, l4_len, seg_type;

	if ((void *)(l4 + 1) > data_end)
		return XDSR_PARSE_NEXT;
	/* EtherTypes read as 16-bit words: struct ethhdr is packed, and clang
	 * would read its fields a byte at a time. */
	if (*(__be16 *)(data + 12) != bpf_htons(ETH_P_IP) || !(cfg->vtep_families & XDSR_VTEP_IPV4))
		return XDSR_PARSE_NEXT;
	if (*(__u8 *)oip != 0x45 || oip->protocol != IPPROTO_UDP ||
	    oip->daddr != *(const volatile __u32 *)&cfg->vtep4[12] || (oip->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return XDSR_PARSE_NEXT;
	if (!mac_equal(eth->h_dest, cfg->mac))
		return XDSR_PARSE_NEXT;
	/* The tunnel header, as parse_overlay reads it: VXLAN with the I flag,
	 * or Geneve version 0 without options, O and C bits clear (its
	 * reserved bits too), carrying Ethernet. Either is 8 bytes with the
	 * VNI in bytes 4-6. */
	if (cfg->vxlan_port && uh->dest == cfg->vxlan_port) {
		if (!(th[0] & XDSR_VXLAN_I))
			return XDSR_PARSE_NEXT;
		seg_type = XDSR_SEG_VXLAN;
	} else if (cfg->geneve_port && uh->dest == cfg->geneve_port) {
		if (*(__be32 *)th != bpf_htonl(XDSR_ETH_P_TEB))
			return XDSR_PARSE_NEXT;
		seg_type = XDSR_SEG_GENEVE;
	} else {
		return XDSR_PARSE_NEXT;
	}
	/* The outer lengths, as parse_ipv4 and parse_l4 check them. */
	tot_len = bpf_ntohs(oip->tot_len);
	ulen = bpf_ntohs(uh->len);
	if ((void *)oip + tot_len > data_end || ulen + sizeof(*oip) > tot_len || ulen < XDSR_FAST_OVERHEAD)
		return XDSR_PARSE_NEXT;
	/* The inner frame, as parse_overlay and parse_ipv4 check it. */
	if (*(__be16 *)((void *)ieth + 12) != bpf_htons(ETH_P_IP) || *(__u8 *)iph != 0x45 ||
	    (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return XDSR_PARSE_NEXT;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || tot_len > ulen - XDSR_FAST_OVERHEAD || (void *)iph + tot_len > data_end)
		return XDSR_PARSE_NEXT;
	l4_len = tot_len - sizeof(*iph);
	if (iph->protocol == IPPROTO_UDP) {
		__u32 ilen = bpf_ntohs(l4->len);

		if (l4_len < sizeof(*l4) || ilen < sizeof(*l4) || ilen > l4_len)
			return XDSR_PARSE_NEXT;
	} else if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)l4;

		if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp) || tcp->doff < 5 || tcp->doff * 4 > l4_len)
			return XDSR_PARSE_NEXT;
	} else {
		return XDSR_PARSE_NEXT;
	}
	if (!l4->dest)
		return XDSR_PARSE_NEXT;

	/* Everything the rest of the program reads, as parse_packet and
	 * parse_overlay would leave it. */
	__builtin_memset(pkt->key.addr, 0, 10);
	pkt->key.addr[10] = 0xff;
	pkt->key.addr[11] = 0xff;
	__builtin_memcpy(&pkt->key.addr[12], &iph->daddr, 4);
	pkt->key.port = l4->dest;
	pkt->key.proto = iph->protocol;
	pkt->key.family = XDSR_FAMILY_IPV4;
	/* VNI: bytes 4-6, read as one word with the reserved byte shifted out. */
	pkt->key.segment = seg_type << XDSR_SEG_TYPE_SHIFT | bpf_ntohl(*(__be32 *)(th + 4)) >> 8;
	pkt->hash_words[0] = (__u64)iph->saddr | (__u64)iph->daddr << 32;
	pkt->n_words = 2;
	pkt->ports = *(__u32 *)l4;
	pkt->tci = 0;
	pkt->vid = 0;
	pkt->l3_len = sizeof(*iph);
	pkt->l4_len = l4_len;
	pkt->tagged = 0;
	pkt->fragment = 0;
	pkt->icmp = 0;
	pkt->overlay = XDSR_FAMILY_IPV4;
	pkt->critical = 0;
	pkt->outer_l3 = XDSR_FAST_IP4;
	pkt->udp_off = XDSR_FAST_UDP;
	pkt->tun_off = XDSR_FAST_TUN;
	pkt->inner_off = XDSR_FAST_INNER;
	return XDSR_PARSE_OK;
}

#endif /* XDSR_PARSING_H */
