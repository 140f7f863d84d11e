/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps. All are pinned by name under the pin directory the loader
 * chooses, so that a restarted control process adopts them and forwarding
 * never stops. The loader sizes them from its configuration before it
 * creates them.
 *
 * Every lookup on the packet path is an array lookup the verifier inlines:
 *   xdsr_index[0]               -> the current service index (an array)
 *   index[bucket]               -> the service's entry (probed linearly)
 *   xdsr_slots[base + slot/..]  -> the slot: a backend index
 *   xdsr_backends[base + b]     -> the backend's MAC and VLAN
 * Updates are atomic because the index is replaced whole: the control side
 * writes changed tables into free space of the global arrays, builds a new
 * index, and swaps it in with one update of xdsr_index, after which the
 * kernel guarantees no program still reads the old index, so the space of
 * the tables it alone referenced can be reused.
 */
#ifndef XDSR_MAPS_H
#define XDSR_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "xdsr_kern_user.h"

/* The current service index: an array of struct xdsr_svc_entry, every one
 * the same size (no BPF_F_INNER_MAP), which is what lets the verifier inline
 * lookups into it, and memory-mappable, so that the control side writes and
 * reads it without a syscall per bucket. The loader gives the kernel its
 * template when it creates this map (libbpf 1.1 cannot resize a template
 * declared here). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XDSR_SLOT_CHUNKS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, union xdsr_slot_chunk);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XDSR_BACKEND_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct xdsr_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDSR_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct xdsr_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XDSR_R_MAX);
	__type(key, __u32);
	__type(value, struct xdsr_counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdsr_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_meta SEC(".maps");

#endif /* XDSR_MAPS_H */
