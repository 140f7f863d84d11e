/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Hashes of the packet path, and the mapping of a hash onto a Maglev slot.
 * xdsr/dataplane/flowhash.py computes the same values in Python; the packet
 * tests check the two agree.
 *
 * 64-bit multiply-xorshift mixing (the constants of splitmix64's finalizer):
 * BPF has no rotate instruction, so a rotate-based hash such as lookup3
 * costs several times the instructions for no better spread.
 *
 * Flow hash input, 64-bit words loaded from the packet as they lie in memory:
 *   IPv4: saddr | daddr << 32, ports | (vid << 16 | proto) << 32   (2 words)
 *   IPv6: saddr (2 words), daddr (2 words), ports | (vid << 16 | proto) << 32
 * "ports" is the first 32 bits of the TCP/UDP header, or 0 for fragments and
 * other protocols, so that every fragment of a datagram lands on one backend.
 */
#ifndef XDSR_HASHING_H
#define XDSR_HASHING_H

#include <linux/types.h>

#define XDSR_MIX_K1 0xbf58476d1ce4e5b9ULL
#define XDSR_MIX_K2 0x94d049bb133111ebULL
/* Seed of the index hash. The index is private to a node, so any constant
 * does; the flow hash's seed is configured (it must match across nodes). */
#define XDSR_INDEX_SEED 0x2545f4914f6cdd1dULL

static __always_inline __u64 mix64(__u64 h, __u64 v)
{
	v *= XDSR_MIX_K1;
	v ^= v >> 31;
	h ^= v;
	h *= XDSR_MIX_K2;
	return h;
}

static __always_inline __u32 finish64(__u64 h)
{
	h ^= h >> 32;
	h *= XDSR_MIX_K1;
	h ^= h >> 29;
	return h >> 32;
}

static __always_inline __u32 flow_hash(const __u64 *w, __u32 n_words, __u32 seed)
{
	__u64 h = seed;

	h = mix64(h, w[0]);
	h = mix64(h, w[1]);
	if (n_words == 5) {
		h = mix64(h, w[2]);
		h = mix64(h, w[3]);
		h = mix64(h, w[4]);
	}
	return finish64(h);
}

/* Bucket of a service key in the index (the key is 3 aligned words). */
static __always_inline __u32 index_hash(const __u64 *k)
{
	__u64 h = XDSR_INDEX_SEED;

	h = mix64(h, k[0]);
	h = mix64(h, k[1]);
	h = mix64(h, k[2]);
	return finish64(h);
}

/* Map a 32-bit hash onto [0, table_size) with a multiply instead of a
 * division: a modulo by a runtime value costs a hardware divide per packet. */
static __always_inline __u32 hash_to_slot(__u32 hash, __u32 table_size)
{
	return ((__u64)hash * table_size) >> 32;
}

#endif /* XDSR_HASHING_H */
