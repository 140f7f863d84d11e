/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Every structure and constant that the XDP program and the Python control
 * side share. Python mirrors these in xdsr/dataplane/abi.py; the test
 * tests/dataplane/test_abi.py compares that mirror with the BTF that clang
 * emits for this header, so the two cannot drift apart silently.
 *
 * Bump XDSR_ABI_VERSION whenever a layout here changes: a process refuses to
 * adopt pinned maps written with another version.
 */
#ifndef XDSR_KERN_USER_H
#define XDSR_KERN_USER_H

#include <linux/types.h>

enum xdsr_abi {
	XDSR_ABI_VERSION = 5,
};

/* Address family of a service key: an IPv6 frame to ::ffff:a.b.c.d is not
 * traffic for the IPv4 VIP a.b.c.d. */
enum xdsr_family {
	XDSR_FAMILY_IPV4 = 4,
	XDSR_FAMILY_IPV6 = 6,
};

/* Segment types: how the tenant network of a VIP is identified. A VXLAN or
 * Geneve frame is keyed by its inner destination and the VNI it came on. */
enum xdsr_seg_type {
	XDSR_SEG_VLAN = 1,   /* seg_id = 802.1Q VID, 0 = untagged */
	XDSR_SEG_VXLAN = 2,  /* seg_id = VNI */
	XDSR_SEG_GENEVE = 3, /* seg_id = VNI */
};

/*
 * What identifies a service: (VIP, destination port, protocol, address
 * family, segment). IPv4 VIPs are stored IPv4-mapped (::ffff:a.b.c.d) with
 * family XDSR_FAMILY_IPV4, so one index serves both families and the family
 * keeps them apart. Port 0 is reserved: it names the table that receives
 * every fragment of (VIP, protocol, segment), because a non-first fragment
 * carries no port; a TCP or UDP packet to port 0 matches nothing. The
 * segment is its type in the top 8 bits and its id (VID, or a 24-bit VNI)
 * below. 24 bytes: compared as three 64-bit words.
 */
struct xdsr_svc_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;  /* enum xdsr_family */
	__u32 segment; /* seg_type << XDSR_SEG_TYPE_SHIFT | seg_id */
};

enum xdsr_layout {
	XDSR_CHUNK_SIZE = 64,      /* bytes of slots per element of xdsr_slots: a cache line */
	XDSR_INDEX_PROBES = 32,    /* a key sits at most this many buckets from its home */
	XDSR_MAX_BACKENDS = 65535, /* per service; 0xffff marks a slot without backend */
	XDSR_MAX_NARROW = 255,     /* up to this many backends, slots are 1 byte (0xff: none) */
	XDSR_SEG_TYPE_SHIFT = 24,  /* a key's segment: type above this bit, id below */
	XDSR_TUNNEL_STRIDE = 3,    /* entries of xdsr_backends per backend of an overlay service */
	XDSR_TUNNEL4_STRIDE = 2,   /* the same, when every endpoint is IPv4 */
};

enum xdsr_svc_flags {
	XDSR_SVC_USED = 1,   /* the bucket holds a service */
	XDSR_SVC_NARROW = 2, /* 1-byte slots (else 2-byte) */
};

/*
 * One bucket of the service index: an open-addressed hash table of
 * cache-line-sized entries, probed linearly from the key's home bucket. It
 * carries everything the packet path needs to find the service's Maglev slots
 * and backends in the global arrays, so a packet costs one index line, one
 * slot line and one backend entry.
 */
struct xdsr_svc_entry {
	struct xdsr_svc_key key;
	__u32 slot_base;    /* first element of the service's slots in xdsr_slots */
	__u32 table_size;   /* M, a prime: number of slots */
	__u32 backend_base; /* first entry of the service's backends in xdsr_backends */
	__u16 n_backends;   /* 0: the service exists but drops (no backend) */
	__u8 flags;         /* enum xdsr_svc_flags */
	__u8 backend_stride; /* entries of xdsr_backends per backend: 1 on a VLAN,
				XDSR_TUNNEL4_STRIDE or XDSR_TUNNEL_STRIDE behind tunnels */
	__u32 stats_id;     /* index into xdsr_svc_stats */
	__u32 reserved1;
	__u64 digest;       /* digest of the service's spec: key and table (control side) */
	__u64 table_digest; /* digest of the table alone: services with equal tables share it */
};

/* Which service index is live (xdsr_index0 or xdsr_index1), and how many
 * times the control side has flipped it. */
struct xdsr_sel {
	__u32 live;
	__u32 seq;
};

/* Slots: the index of the backend, relative to the service's backend_base. */
union xdsr_slot_chunk {
	__u8 narrow[XDSR_CHUNK_SIZE];
	__u16 wide[XDSR_CHUNK_SIZE / 2];
};

struct xdsr_backend {
	__u8 mac[6];        /* VLAN: the frame's new destination; overlay: the inner one */
	__u16 vid;          /* 0 = send untagged (always 0 behind a tunnel) */
	__u32 weight;       /* control-plane information only */
	__u32 vni;          /* behind a tunnel: the VNI it is sent on; 0 on a VLAN */
};

/*
 * A backend of an overlay service (its key's segment is VXLAN or Geneve)
 * takes consecutive entries of xdsr_backends: the struct xdsr_backend
 * above, then struct xdsr_backend_hop, which holds everything else an IPv4
 * endpoint's rewrite needs. When every backend of the service has an IPv4
 * endpoint, that is all: XDSR_TUNNEL4_STRIDE entries, 32 bytes starting at
 * an even entry, so one cache line per frame. Otherwise
 * each backend takes XDSR_TUNNEL_STRIDE entries, the third an IPv6
 * endpoint's address (zero for an IPv4 one). The entries of a VLAN service
 * stay 16 bytes each, so VLAN traffic reads what it always read.
 */
struct xdsr_backend_hop {
	__u8 mac[6];        /* outer destination MAC: the underlay next hop to the endpoint */
	__u8 family;        /* enum xdsr_family of the endpoint */
	__u8 reserved0;
	__u8 addr4[4];      /* the endpoint, if IPv4 (family XDSR_FAMILY_IPV4) */
	__u32 reserved1;
};

struct xdsr_backend_vtep {
	__u8 addr[16];      /* the endpoint, if IPv6: third entry, XDSR_TUNNEL_STRIDE only */
};

/* Each is one entry of xdsr_backends. */
_Static_assert(sizeof(struct xdsr_backend_vtep) == sizeof(struct xdsr_backend), "one backends entry");
_Static_assert(sizeof(struct xdsr_backend_hop) == sizeof(struct xdsr_backend), "one backends entry");

/* Per-service counters, per CPU, indexed by the entry's stats_id. */
struct xdsr_counter {
	__u64 packets;
	__u64 bytes;
};

/* Global counters, per CPU, indexed by reason. Every packet is counted once
 * under exactly one verdict reason; XDSR_R_FRAGMENT, XDSR_R_VLAN_PUSH,
 * XDSR_R_VLAN_POP and XDSR_R_ICMP_ERROR count details of forwarded packets
 * in addition. Frames re-encapsulated to a backend behind a tunnel have no
 * detail of their own: the counters of their (VXLAN or Geneve) services
 * count exactly them, and a per-CPU increment per frame is a sizeable part
 * of an overlay frame's cost. */
enum xdsr_reason {
	XDSR_R_FORWARDED = 0,   /* XDP_TX to a backend */
	XDSR_R_NOT_FOR_US = 1,  /* XDP_PASS: destination MAC is not this interface */
	XDSR_R_NOT_IP = 2,      /* XDP_PASS: ARP, LLDP, ... */
	XDSR_R_NO_SERVICE = 3,  /* XDP_PASS: IP, but no service matches */
	XDSR_R_MALFORMED = 4,   /* XDP_DROP: truncated or invalid headers */
	XDSR_R_NO_BACKEND = 5,  /* XDP_DROP: service without backends */
	XDSR_R_UNSUPPORTED = 6, /* XDP_DROP: IPv6 extension chain too long; a Geneve
				   frame for a service with critical options or of
				   an unknown version */
	XDSR_R_TX_ERROR = 7,    /* XDP_DROP: could not push or pop the tag, or a
				   tunnel backend's endpoint is not of the
				   underlay family the frame came on */
	XDSR_R_FRAGMENT = 8,    /* detail: a forwarded IP fragment */
	XDSR_R_VLAN_PUSH = 9,   /* detail: tag added */
	XDSR_R_VLAN_POP = 10,   /* detail: tag removed */
	XDSR_R_ICMP_ERROR = 11, /* detail: an ICMP "too big" steered to the quoted flow's backend */
	XDSR_R_MAX = 12,
};

/* Written once at creation into xdsr_meta[0]: the sizes the maps were made
 * with. A process checks it before it adopts pinned maps. */
struct xdsr_meta {
	__u32 abi_version;
	__u32 max_services;
	__u32 index_size;    /* buckets of the service index, a power of two */
	__u32 slot_chunks;   /* elements of xdsr_slots */
	__u32 backend_slots; /* entries of xdsr_backends */
	__u32 reserved;
};

/* The mark `xdsr dp probe` puts in a frame's XDP metadata (4 bytes, host
 * order, through BPF_PROG_TEST_RUN): the program computes the verdict of a
 * marked frame but counts nothing, so probes never show in the counters
 * users read. A received frame has no metadata, so it is never marked. */
enum xdsr_probe {
	XDSR_PROBE_MARK = 0x62727078,
};

/* Per-attachment constants, set in .rodata by the loader before load. */
struct xdsr_prog_cfg {
	__u8 mac[6];        /* the interface's MAC: new source MAC, and the only
	                       destination MAC the program acts on */
	__u16 reserved;
	__u32 ifindex;
	__u32 hash_seed;    /* must be equal on every LBN of a group, or a flow
	                       that ECMP moves between LBNs changes backend */
	__u32 index_mask;   /* index_size - 1 */
	/* This node's tunnel endpoint (docs/dataplane.md, Overlays): frames
	 * to it on these UDP ports are parsed as VXLAN or Geneve, and it is the
	 * outer source of what the program sends to backends behind tunnels. */
	__be16 vxlan_port;  /* 0: VXLAN off */
	__be16 geneve_port; /* 0: Geneve off */
	__u8 vtep4[16];     /* IPv4 endpoint as ::ffff:a.b.c.d (8-byte aligned: compared as words) */
	__u8 vtep6[16];
	__u8 vtep_families; /* enum xdsr_vtep_families: which endpoints are set */
	__u8 reserved1[7];
};

enum xdsr_vtep_families {
	XDSR_VTEP_IPV4 = 1,
	XDSR_VTEP_IPV6 = 2,
};

#endif /* XDSR_KERN_USER_H */
