/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Build-time tunables. Each can be overridden with -D at compile time. */
#ifndef XDSR_CONSTS_H
#define XDSR_CONSTS_H

/* Default number of services; the loader resizes the maps to the configured
 * limit before it creates them, so this only matters for raw loads. */
#ifndef XDSR_MAX_SERVICES
#define XDSR_MAX_SERVICES 4096
#endif

/* How many IPv6 extension headers the parser walks before it gives up. Real
 * traffic rarely carries more than two; the bound keeps the verifier happy. */
#ifndef XDSR_MAX_IPV6_EXT
#define XDSR_MAX_IPV6_EXT 4
#endif

#endif /* XDSR_CONSTS_H */
