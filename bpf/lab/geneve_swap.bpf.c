// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Geneve for test fabrics on a kernel without Geneve devices: a tc program
 * that turns a Linux VXLAN device's frames into Geneve on the wire and back.
 *
 * A VXLAN header and a Geneve header without options are both 8 bytes with
 * the VNI in bytes 4-6, so the translation rewrites the first 4 bytes and the
 * UDP port and moves nothing:
 *
 *   VXLAN   flags 0x08 | reserved (3)         | VNI (3) | reserved
 *   Geneve  ver 0, opt_len 0 | flags 0 | 0x6558 | VNI (3) | reserved
 *
 * Attach to a host's underlay port (tc clsact):
 *   tc filter add dev X egress  bpf da obj geneve_swap.o sec tc/egress    VXLAN  -> Geneve
 *   tc filter add dev X ingress bpf da obj geneve_swap.o sec tc/ingress   Geneve -> VXLAN
 * The host's VXLAN device then speaks Geneve on the wire with real TCP inside.
 * Only IPv4 underlays without IP options; the UDP checksum follows the
 * changed words. Geneve frames with options are left
 * alone (and so dropped by the VXLAN device: not what this lab sends).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define VXLAN_PORT 4789
#define GENEVE_PORT 6081

static __always_inline __u8 *tunnel_header(struct __sk_buff *skb, __u16 port)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *iph;
	struct udphdr *uh;
	__u8 *th;

	if (bpf_skb_pull_data(skb, sizeof(*eth) + sizeof(*iph) + sizeof(*uh) + 8))
		return 0;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	iph = (void *)(eth + 1);
	uh = (void *)(iph + 1);
	th = (void *)(uh + 1);
	if ((void *)(th + 8) > data_end)
		return 0;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5 || iph->protocol != IPPROTO_UDP)
		return 0;
	if (uh->dest != bpf_htons(port))
		return 0;
	return th;
}

/* Rewrite the UDP port and the header's first 4 bytes. The checksum is
 * left to bpf_l4_csum_replace, which knows what the field holds: a full
 * checksum to update (RFC 1624), the pseudo-header sum of a CHECKSUM_PARTIAL
 * packet the stack completes later (leave it), or 0 (none: keep 0). */
#define UDP_CSUM_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr) + offsetof(struct udphdr, check))

static __always_inline void rewrite(struct __sk_buff *skb, __u8 *th, __u16 port, const __u8 *hdr)
{
	struct udphdr *uh = (struct udphdr *)th - 1;
	__u16 *w = (__u16 *)th;
	__u16 old0 = w[0], old1 = w[1], oldp = uh->dest, new0, new1, newp = bpf_htons(port);
	__u64 flags = BPF_F_MARK_MANGLED_0 | sizeof(__u16);

	uh->dest = newp;
	th[0] = hdr[0];
	th[1] = hdr[1];
	th[2] = hdr[2];
	th[3] = hdr[3];
	new0 = w[0];
	new1 = w[1];
	/* Packet pointers are invalid after the first call. */
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, oldp, newp, flags);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old0, new0, flags);
	bpf_l4_csum_replace(skb, UDP_CSUM_OFF, old1, new1, flags);
}

SEC("tc/egress")
int vxlan_to_geneve(struct __sk_buff *skb)
{
	__u8 *th = tunnel_header(skb, VXLAN_PORT);

	static const __u8 geneve[4] = {0, 0, 0x65, 0x58};

	if (th)
		rewrite(skb, th, GENEVE_PORT, geneve);
	return TC_ACT_OK;
}

SEC("tc/ingress")
int geneve_to_vxlan(struct __sk_buff *skb)
{
	__u8 *th = tunnel_header(skb, GENEVE_PORT);

	static const __u8 vxlan[4] = {0x08, 0, 0, 0};

	if (th && th[0] == 0 && th[1] == 0 && th[2] == 0x65 && th[3] == 0x58)
		rewrite(skb, th, VXLAN_PORT, vxlan);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
