// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * An 802.1Q access port for a host's veth, for test fabrics on a kernel
 * without VLAN devices or a VLAN-filtering bridge.
 *
 * Attach both programs to the host's end of the veth (tc clsact):
 *   egress   untagged frames leave tagged with the port's VID
 *   ingress  frames of the port's VID arrive untagged; frames of any other
 *            VLAN, untagged and double-tagged frames are dropped
 *
 * The VID is the minor number of the tc filter's classid, e.g. for VID 100
 * (0x64):
 *   tc filter add dev X egress  bpf da obj vlan_access.o sec tc/egress  classid 1:64
 *   tc filter add dev X ingress bpf da obj vlan_access.o sec tc/ingress classid 1:64
 * cls_bpf stores the filter's classid in skb->tc_classid before it runs the
 * program, so one compiled object serves every port, the VID is set in the
 * same netlink request that attaches the program (a port is never open with
 * a wrong VID) and there is no pinned map to leak. VID 0 (no classid) keeps
 * the port closed.
 *
 * Each loaded copy counts its verdicts in its own (unpinned) per-CPU array;
 * the lab reads it with bpftool through the program's map ids.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define VLAN_VID_MASK 0x0fff

/* Indexes of access_stats; xdsr/lab/netns.py names them in this order. */
enum access_counter {
	ACC_EGRESS_TAGGED = 0,  /* egress: tag pushed */
	ACC_EGRESS_DROP,        /* egress: port closed or push failed */
	ACC_INGRESS_PASS,       /* ingress: right VID, tag popped */
	ACC_INGRESS_OTHER_VID,  /* ingress: dropped, another VLAN */
	ACC_INGRESS_UNTAGGED,   /* ingress: dropped, no tag */
	ACC_INGRESS_BAD,        /* ingress: dropped, Q-in-Q, closed port, pop failed */
	ACC_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ACC_MAX);
	__type(key, __u32);
	__type(value, __u64);
} access_stats SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline int count(__u32 idx, int verdict)
{
	__u64 *c = bpf_map_lookup_elem(&access_stats, &idx);

	if (c)
		*c += 1;
	return verdict;
}

static __always_inline __u16 port_vid(const struct __sk_buff *skb)
{
	return skb->tc_classid & VLAN_VID_MASK;
}

static __always_inline int is_vlan_proto(__be16 proto)
{
	return proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD);
}

SEC("tc/egress")
int access_egress(struct __sk_buff *skb)
{
	__u16 vid = port_vid(skb);

	if (!vid)
		return count(ACC_EGRESS_DROP, TC_ACT_SHOT);
	/* The tag goes into skb->vlan_tci; with txvlan off the device's
	 * transmit path writes it into the frame, so peers and XDP see it. */
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), vid))
		return count(ACC_EGRESS_DROP, TC_ACT_SHOT);
	return count(ACC_EGRESS_TAGGED, TC_ACT_OK);
}

SEC("tc/ingress")
int access_ingress(struct __sk_buff *skb)
{
	__u16 vid = port_vid(skb);
	__u16 tci;

	if (!vid)
		return count(ACC_INGRESS_BAD, TC_ACT_SHOT);
	/* The receive path moves the outer tag out of the frame into
	 * skb->vlan_tci before tc ingress runs, whatever rxvlan says; the
	 * in-band branch covers a kernel that leaves it in place. */
	if (skb->vlan_present) {
		if (skb->vlan_proto != bpf_htons(ETH_P_8021Q))
			return count(ACC_INGRESS_BAD, TC_ACT_SHOT);
		tci = skb->vlan_tci;
	} else {
		void *data = (void *)(long)skb->data;
		void *data_end = (void *)(long)skb->data_end;
		struct ethhdr *eth = data;
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_8021Q))
			return count(ACC_INGRESS_UNTAGGED, TC_ACT_SHOT);
		if ((void *)(vh + 1) > data_end)
			return count(ACC_INGRESS_BAD, TC_ACT_SHOT);
		tci = bpf_ntohs(vh->tci);
	}
	if ((tci & VLAN_VID_MASK) != vid)
		return count(ACC_INGRESS_OTHER_VID, TC_ACT_SHOT);
	if (bpf_skb_vlan_pop(skb))
		return count(ACC_INGRESS_BAD, TC_ACT_SHOT);
	/* A second tag would now be the outer one: an access port carries
	 * exactly one. */
	if (skb->vlan_present || is_vlan_proto(skb->protocol))
		return count(ACC_INGRESS_BAD, TC_ACT_SHOT);
	return count(ACC_INGRESS_PASS, TC_ACT_OK);
}

char _license[] SEC("license") = "Dual BSD/GPL";
