/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow hash: Bob Jenkins' lookup3 hashword() over 32-bit words, and the
 * mapping of a hash onto a Maglev slot. xdsr/dataplane/flowhash.py computes
 * the same values in Python; the packet tests check the two agree.
 *
 * Input words, loaded from the packet as they lie in memory:
 *   IPv4: saddr, daddr, ports, vid << 16 | proto            (4 words)
 *   IPv6: saddr[4], daddr[4], ports, vid << 16 | proto      (10 words)
 * "ports" is the first 32 bits of the TCP/UDP header, or 0 for fragments and
 * other protocols, so that every fragment of a datagram lands on one backend.
 */
#ifndef XDSR_HASHING_H
#define XDSR_HASHING_H

#include <linux/types.h>

static __always_inline __u32 rol32(__u32 x, int k)
{
	return (x << k) | (x >> (32 - k));
}

#define LOOKUP3_MIX(a, b, c)                     \
	do {                                     \
		a -= c; a ^= rol32(c, 4);  c += b; \
		b -= a; b ^= rol32(a, 6);  a += c; \
		c -= b; c ^= rol32(b, 8);  b += a; \
		a -= c; a ^= rol32(c, 16); c += b; \
		b -= a; b ^= rol32(a, 19); a += c; \
		c -= b; c ^= rol32(b, 4);  b += a; \
	} while (0)

#define LOOKUP3_FINAL(a, b, c)                    \
	do {                                      \
		c ^= b; c -= rol32(b, 14);        \
		a ^= c; a -= rol32(c, 11);        \
		b ^= a; b -= rol32(a, 25);        \
		c ^= b; c -= rol32(b, 16);        \
		a ^= c; a -= rol32(c, 4);         \
		b ^= a; b -= rol32(a, 14);        \
		c ^= b; c -= rol32(b, 24);        \
	} while (0)

/* hashword() for exactly 4 words. */
static __always_inline __u32 flow_hash4(const __u32 *k, __u32 seed)
{
	__u32 a, b, c;

	a = b = c = 0xdeadbeef + (4 << 2) + seed;
	a += k[0]; b += k[1]; c += k[2];
	LOOKUP3_MIX(a, b, c);
	a += k[3];
	LOOKUP3_FINAL(a, b, c);
	return c;
}

/* hashword() for exactly 10 words. */
static __always_inline __u32 flow_hash10(const __u32 *k, __u32 seed)
{
	__u32 a, b, c;

	a = b = c = 0xdeadbeef + (10 << 2) + seed;
	a += k[0]; b += k[1]; c += k[2];
	LOOKUP3_MIX(a, b, c);
	a += k[3]; b += k[4]; c += k[5];
	LOOKUP3_MIX(a, b, c);
	a += k[6]; b += k[7]; c += k[8];
	LOOKUP3_MIX(a, b, c);
	a += k[9];
	LOOKUP3_FINAL(a, b, c);
	return c;
}

/* Map a 32-bit hash onto [0, table_size) with a multiply instead of a
 * division: a modulo by a runtime value costs a hardware divide per packet. */
static __always_inline __u32 hash_to_slot(__u32 hash, __u32 table_size)
{
	return ((__u64)hash * table_size) >> 32;
}

#endif /* XDSR_HASHING_H */
