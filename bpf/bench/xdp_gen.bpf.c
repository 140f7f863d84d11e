// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The throughput benchmark's traffic generator (`xdsr bench rfc2544`).
 *
 * User space runs it with BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES,
 * with ingress_ifindex = the tester's veth: every XDP_TX sends the frame out
 * of that veth to the device under test. Each run makes one frame of a new
 * flow from the template in gen_cfg: a pseudo-random source address and
 * port, and a destination VIP picked at random among the configured ones
 * (as in the paper's Table 2 runs). With IMIX on, the template holds the
 * largest packet and the frame is trimmed with bpf_xdp_adjust_tail in the
 * 7:4:1 pattern.
 *
 * The kernel recycles the frames' pages without restoring their contents,
 * and a device under test may have rewritten them (MACs, tag, NAT'd address,
 * TTL), so every frame gets the whole template headers copied over it. The
 * payload is all zeros and never touched, which is why trimming it changes
 * no checksum beyond the length fields. Checksums (IPv4 header, and UDP/TCP
 * with the pseudo-header) are finished from partial sums precomputed over
 * the words that never change: the kernel path (conntrack, NAT) drops frames
 * with bad checksums.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bench.h"

const volatile struct gen_cfg gen_cfg = {};

/* One CPU runs the generator (the test run disables migration), so plain
 * increments are enough. */
struct gen_state gen_state = {};

/* splitmix64's finalizer: a counter in, 64 well-mixed bits out. Cheaper than
 * a helper call, and the flow sequence is reproducible from the seed. */
static __always_inline __u64 mix64(__u64 z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Add the two 16-bit words of a 32-bit field, as they lie in memory. */
static __always_inline __u32 add32(__u32 sum, __u32 v)
{
	return sum + (v & 0xffff) + (v >> 16);
}

static __always_inline __u16 csum_finish(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Copy the first n (a constant) bytes of the template. The loads are
 * volatile or clang would fold the zero initializer of gen_cfg in. */
static __always_inline void copy_hdr(void *dst, const int n)
{
	int i = 0;

#pragma unroll
	for (i = 0; i + 8 <= n; i += 8)
		*(__u64 *)(dst + i) = *(const volatile __u64 *)&gen_cfg.hdr[i];
	if (n - i >= 4) {
		*(__u32 *)(dst + i) = *(const volatile __u32 *)&gen_cfg.hdr[i];
		i += 4;
	}
	if (n - i >= 2)
		*(__u16 *)(dst + i) = *(const volatile __u16 *)&gen_cfg.hdr[i];
}

static __always_inline int gen(struct xdp_md *ctx, const int l3off, const int tcp)
{
	const int l4off = l3off + (int)sizeof(struct iphdr);
	const int hdr_len = l4off + (tcp ? (int)sizeof(struct tcphdr) : (int)sizeof(struct udphdr));
	__u64 seq = gen_state.seq++;
	__u64 r = mix64((gen_cfg.flow_mask ? seq & gen_cfg.flow_mask : seq) + gen_cfg.seed);
	__u32 ip_len = gen_cfg.ip_len;
	__u32 saddr, daddr, idx, sum;
	__u16 tot_len, l4_len, sport, csum;
	void *data, *data_end;
	struct iphdr *iph;

	if (gen_cfg.imix) {
		__u32 pos = gen_state.imix_pos;

		gen_state.imix_pos = pos + 1 >= IMIX_PATTERN_LEN ? 0 : pos + 1;
		if (IMIX_LARGE_MASK & (1u << (pos & 31)))
			ip_len = gen_cfg.imix_len[2];
		else if (IMIX_MEDIUM_MASK & (1u << (pos & 31)))
			ip_len = gen_cfg.imix_len[1];
		else
			ip_len = gen_cfg.imix_len[0];
		if (ip_len < gen_cfg.ip_len && bpf_xdp_adjust_tail(ctx, (int)ip_len - (int)gen_cfg.ip_len))
			goto error;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + hdr_len > data_end)
		goto error;
	copy_hdr(data, hdr_len);

	/* Bits 0-15: source port; 16-39: source address; 40-55: the VIP. */
	saddr = gen_cfg.saddr_base | bpf_htonl((__u32)(r >> 16) & gen_cfg.saddr_mask);
	idx = (((__u32)(r >> 40) & 0xffff) * gen_cfg.n_vips) >> 16;
	if (idx >= GEN_MAX_VIPS)
		goto error;
	daddr = gen_cfg.vips[idx];
	sport = bpf_htons(gen_cfg.sport_min + ((((__u32)r & 0xffff) * gen_cfg.sport_span) >> 16));
	tot_len = bpf_htons(ip_len);
	l4_len = bpf_htons(ip_len - sizeof(struct iphdr));

	iph = data + l3off;
	iph->tot_len = tot_len;
	iph->saddr = saddr;
	iph->daddr = daddr;
	sum = add32(add32(0, saddr), daddr);
	iph->check = csum_finish(gen_cfg.ip_sum + sum + tot_len);

	/* The pseudo-header's addresses and length, plus the port. */
	sum += sport + l4_len;
	if (tcp) {
		struct tcphdr *th = data + l4off;

		th->source = sport;
		th->check = csum_finish(gen_cfg.l4_sum + sum);
	} else {
		struct udphdr *uh = data + l4off;

		uh->source = sport;
		uh->len = l4_len; /* counted a second time: it is in the header too */
		csum = csum_finish(gen_cfg.l4_sum + sum + l4_len);
		uh->check = csum ? csum : 0xffff; /* 0 would mean "no checksum" */
	}
	if (l3off == GEN_VXLAN_INNER_L3) {
		/* The underlay's lengths follow the inner packet's; its UDP
		 * checksum stays 0 (none, as VXLAN over IPv4 allows). */
		struct iphdr *outer = data + 14;
		struct udphdr *ouh = data + 14 + sizeof(struct iphdr);

		/* Outer IP: its header, UDP, VXLAN, the inner Ethernet and IP. */
		tot_len = bpf_htons(ip_len + GEN_VXLAN_OUTER);
		outer->tot_len = tot_len;
		outer->check = csum_finish(gen_cfg.outer_ip_sum + tot_len);
		ouh->len = bpf_htons(ip_len + GEN_VXLAN_OUTER - sizeof(struct iphdr));
	}
	return XDP_TX;
error:
	gen_state.errors++;
	return XDP_DROP;
}

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	/* Constants once loaded: the verifier drops the other paths. */
	if (gen_cfg.vxlan) {
		if (gen_cfg.proto == IPPROTO_TCP)
			return gen(ctx, GEN_VXLAN_INNER_L3, 1);
		return gen(ctx, GEN_VXLAN_INNER_L3, 0);
	}
	if (gen_cfg.tagged) {
		if (gen_cfg.proto == IPPROTO_TCP)
			return gen(ctx, 18, 1);
		return gen(ctx, 18, 0);
	}
	if (gen_cfg.proto == IPPROTO_TCP)
		return gen(ctx, 14, 1);
	return gen(ctx, 14, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
