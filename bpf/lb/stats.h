/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU counters: no atomics on the packet path, summed by the reader. */
#ifndef XDSR_STATS_H
#define XDSR_STATS_H

#include <bpf/bpf_helpers.h>

#include "maps.h"

static __always_inline void count(void *map, __u32 idx, __u64 bytes)
{
	struct xdsr_counter *c = bpf_map_lookup_elem(map, &idx);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline void count_reason(__u32 reason, __u64 bytes)
{
	count(&xdsr_stats, reason, bytes);
}

#endif /* XDSR_STATS_H */
