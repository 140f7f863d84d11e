/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps. All are pinned by name under the pin directory the loader
 * chooses, so that a restarted control process adopts them and forwarding
 * never stops. The loader sizes them from its configuration before it
 * creates them.
 *
 * Every lookup on the packet path is an array lookup the verifier inlines:
 *   xdsr_sel[0]                 -> which of the two service indexes is live
 *   xdsr_index0/1[bucket]       -> the service's entry (probed linearly)
 *   xdsr_slots[base + slot/..]  -> the slot: a backend index
 *   xdsr_backends[base + b]     -> the backend's MAC and VLAN
 *
 * Updates are atomic because the index is replaced whole: the control side
 * writes changed tables into free space of the global arrays, writes a
 * complete new index into the index that is not live, and flips xdsr_sel
 * with one 4-byte write. Before it touches that index (or space only it
 * referenced) again, it waits for an RCU grace period — an update of
 * xdsr_barrier, a map of maps, makes the kernel wait for one — so no
 * program still reads it.
 */
#ifndef XDSR_MAPS_H
#define XDSR_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "xdsr_kern_user.h"

/* The two service indexes: arrays of struct xdsr_svc_entry, memory-mappable
 * so that the control side writes and reads them without a syscall per
 * bucket. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, XDSR_INDEX_SIZE);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct xdsr_svc_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_index0 SEC(".maps"), xdsr_index1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct xdsr_sel);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdsr_sel SEC(".maps");

/* Never used by the program: updating it is how the control side waits for
 * an RCU grace period (the kernel waits for one after every update of a map
 * of maps from user space). */
struct xdsr_barrier_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct xdsr_barrier_inner);
} xdsr_barrier SEC(".maps");

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
