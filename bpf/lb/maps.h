/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps. All are pinned by name under the pin directory the loader
 * chooses, so that a restarted control process adopts them and forwarding
 * never stops. The loader sets max_entries of the service-sized maps from
 * its configuration before it creates them.
 */
#ifndef XDSR_MAPS_H
#define XDSR_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "consts.h"
#include "xdsr_kern_user.h"

/* Template of a service table; every real table is created by the control
 * side with its own size (BPF_F_INNER_MAP allows sizes to differ). */
struct xdsr_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_INNER_MAP);
	__type(key, __u32);
	__type(value, union xdsr_table_elem);
};

/* Service key -> table. Replacing a value swaps a whole table in one update,
 * so the packet path sees either the old table or the new one, never a mix;
 * the kernel frees the old table after every reader is done with it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, XDSR_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct xdsr_svc_key);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct xdsr_table);
} xdsr_services SEC(".maps");

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
