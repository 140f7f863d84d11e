/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Build-time defaults. The loader resizes the maps to its configuration
 * before it creates them, so these only matter for raw loads. */
#ifndef XDSR_CONSTS_H
#define XDSR_CONSTS_H

#ifndef XDSR_MAX_SERVICES
#define XDSR_MAX_SERVICES 4096
#endif

/* Buckets of the service index: a power of two, four per service so that
 * with a fragment entry per service it stays at most half full. */
#ifndef XDSR_INDEX_SIZE
#define XDSR_INDEX_SIZE 16384
#endif

#ifndef XDSR_SLOT_CHUNKS
#define XDSR_SLOT_CHUNKS 524288 /* 32 MiB of slots */
#endif

#ifndef XDSR_BACKEND_SLOTS
#define XDSR_BACKEND_SLOTS 262144 /* 4 MiB of backends */
#endif

/* How many IPv6 extension headers the parser walks before it gives up. Real
 * traffic rarely carries more than two; the bound keeps the verifier happy. */
#ifndef XDSR_MAX_IPV6_EXT
#define XDSR_MAX_IPV6_EXT 4
#endif

#endif /* XDSR_CONSTS_H */
