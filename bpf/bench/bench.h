/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared by the throughput benchmark's programs and Python
 * (src/xdsr/bench/rfc2544/programs.py mirrors them with ctypes; the harness
 * checks the sizes against the objects' BTF before it loads them).
 *
 *   xdp_gen     the tester's traffic generator, run with BPF_PROG_TEST_RUN and
 *               BPF_F_TEST_XDP_LIVE_FRAMES on the tester's veth
 *   xdp_count   the tester's receiver: counts what comes back and checks the
 *               rewrite against a map of expected (dst IP, dst MAC, VID)
 *   xdp_broken  a deliberately wrong device under test, for the harness's tests
 */
#ifndef XDSR_BENCH_H
#define XDSR_BENCH_H

#include <linux/types.h>

#define GEN_HDR_MAX 128   /* bytes of template headers: Ethernet, tag, IPv4, TCP; with VXLAN the
			     underlay's Ethernet, IPv4, UDP and VXLAN before them */
#define GEN_MAX_VIPS 256  /* destination addresses the generator picks from */

#define IMIX_PATTERN_LEN 12
/* Positions of the 12-frame IMIX cycle that carry a medium or a large packet;
 * the other 7 are small: 7:4:1, interleaved so that no size comes in long runs. */
#define IMIX_MEDIUM_MASK ((1u << 1) | (1u << 4) | (1u << 8) | (1u << 11))
#define IMIX_LARGE_MASK (1u << 6)

/*
 * Generator configuration, in .rodata: the verifier sees every field as a
 * constant, so the tagged/untagged and TCP/UDP paths not taken cost nothing.
 *
 * Checksums are finished per packet from partial sums that user space
 * computes once over every 16-bit word the generator never changes. Sums are
 * of the words as they lie in memory, loaded little-endian (a ones'
 * complement sum is independent of byte order when all words are swapped
 * alike), left unfolded in 32 bits.
 */
struct gen_cfg {
	__u8 hdr[GEN_HDR_MAX];    /* template headers, copied over every frame */
	__u32 vips[GEN_MAX_VIPS]; /* destination IPv4 addresses, network order */
	__u32 n_vips;             /* 1..GEN_MAX_VIPS */
	__u32 saddr_base;         /* source address, network order ... */
	__u32 saddr_mask;         /* ... with these bits (host order) random */
	__u32 ip_sum;             /* IPv4 header without tot_len, check, saddr, daddr */
	__u32 l4_sum;             /* pseudo-header protocol word + L4 header without
				     sport, length, check + payload */
	__u16 ip_len;             /* tot_len of the template, host order */
	__u16 imix_len[3];        /* IMIX IP packet sizes: small, medium, large */
	__u16 sport_min;          /* source ports: sport_min + random 0..sport_span-1 */
	__u16 sport_span;
	__u8 tagged;              /* template carries an 802.1Q tag */
	__u8 proto;               /* IPPROTO_UDP or IPPROTO_TCP */
	__u8 imix;                /* trim the (largest) template per packet */
	__u8 vxlan;               /* the frame is VXLAN over untagged IPv4: the
				     fields above are the inner frame's */
	__u64 seed;
	__u64 flow_mask;          /* 0: a new flow every frame; else 2^k - 1:
				     the flows repeat every 2^k frames */
	__u32 outer_ip_sum;       /* with vxlan: the outer IPv4 header without tot_len, check */
	__u32 pad;
};

/* VXLAN over untagged IPv4: outer Ethernet, IPv4, UDP, VXLAN; then the inner Ethernet. */
#define GEN_VXLAN_OUTER (14 + 20 + 8 + 8)
#define GEN_VXLAN_INNER_L3 (GEN_VXLAN_OUTER + 14)

/* Generator state, in .bss (the generator runs on one CPU). */
struct gen_state {
	__u64 seq;      /* frames generated */
	__u64 errors;   /* frames that could not be built (dropped) */
	__u32 imix_pos; /* position in the 12-frame IMIX cycle */
	__u32 pad;
};

/*
 * Counter configuration, in .rodata.
 *
 * What a correctly handled frame looks like once it is back: its source MAC
 * is src_mac, and its (destination IPv4, destination MAC, in-frame VID) is
 * one the harness expects for the device under test:
 *   loopback    (VIP, DUT MAC, frontend VID): the frame came back unchanged
 *   xdsr        (VIP, backend MAC, backend VID) for every backend of the VIP
 *   DNAT        (DNAT target, tester MAC, untagged)
 *
 * The expected keys live in an open-addressing table (linear probing, at
 * most half full) of 32-bit fingerprints in an ARRAY map, which the verifier
 * inlines. Two costs drove this design, both of which land in every measured
 * rate: a BPF hash map lookup (jhash, bucket walk, memcmp) cost ~30 ns per
 * frame, and a table of whole 12-byte keys (128 KiB for 4000 keys) competed
 * with the DUT for the L2 cache, charging the DUTs with many keys (xdsr B,
 * DNAT) more than the loopback. 4 bytes per slot keep 4000 keys in 32 KiB.
 * The price: a wrong frame is accepted if its fingerprint equals that of an
 * expected key in its probe window, a chance below 2^-29 per frame.
 *
 * User space places every key within COUNT_MAX_PROBES slots of its home
 * (growing the table if needed), so a key absent from its window is absent.
 */
struct count_cfg {
	__u8 src_mac[6];   /* every returned frame must come from this MAC */
	__u8 table_bits;   /* the table has 1 << table_bits slots */
	__u8 vxlan;        /* frames come back VXLAN-encapsulated: check the inner
			      destination MAC and address, the VNI in the VID's place */
};

#define COUNT_UNTAGGED 0xffff
#define COUNT_MAX_PROBES 8
#define COUNT_HASH_MUL1 0x9e3779b97f4a7c15ULL
#define COUNT_HASH_MUL2 0xc2b2ae3d27d4eb4fULL

/*
 * The key's hash: macvid = the 6 MAC bytes as they lie in memory, loaded
 * little-endian, | VID (host order, COUNT_UNTAGGED if untagged) << 48; daddr
 * loaded as it lies in memory.
 *   h    = (macvid ^ daddr * MUL1) * MUL2         (64 bits)
 *   home = h >> (64 - table_bits)
 *   fp   = ((h ^ h >> 32) * MUL1) >> 32 | 1       (0 marks an empty slot)
 */
typedef __u32 count_slot_t;

/* Per-CPU counters of the receiver; one element. */
struct count_stats {
	__u64 frames;     /* every frame that came back */
	__u64 wire_bytes; /* their sizes on a wire: + 4 bytes FCS, at least 64 */
	__u64 ok;         /* rewritten as expected */
	__u64 bad_parse;  /* not (tagged) IPv4, or truncated */
	__u64 bad_src;    /* unexpected source MAC */
	__u64 bad_dst;    /* (dst IP, dst MAC, VID) not among the expected ones */
};

/* xdp_broken configuration, in .rodata. */
struct broken_cfg {
	__u32 every; /* corrupt every Nth frame's destination MAC (0: never) */
	__u32 pad;
};

#endif /* XDSR_BENCH_H */
