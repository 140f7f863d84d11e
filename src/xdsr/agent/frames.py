"""ARP and Neighbor Discovery frames for resolving members' MACs over the trunk.

The LB node has no address and no VLAN device on tenant VLANs, so the agent
builds the Ethernet frames itself (802.1Q tag in the frame) and reads the
answers from an AF_PACKET socket. Pure functions, no I/O.

* IPv4: an ARP *probe* (RFC 5227): sender IP 0.0.0.0, so no host's ARP
  cache learns anything from it. Linux answers probes for its own
  addresses (arp_process's "sip == 0" case), unicast to the sender MAC.
* IPv6: a Neighbor Solicitation from the trunk's own EUI-64 link-local
  address, with a Source Link-Layer Address option, to the target's
  solicited-node multicast group. It is *not* sent from `::`: an NS from
  the unspecified address is a DAD probe, and a host whose address is still
  tentative concludes from it that the address is a duplicate and disables
  it (RFC 4862 5.4.3). An NS from a unicast source for a tentative address is
  silently ignored instead, and a preferred address answers with a solicited
  unicast NA carrying its MAC (Target Link-Layer Address option).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from xdsr.net import sockfilter as cbpf
from xdsr.net.frames import (
    BROADCAST,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    checksum,
    ethernet,
    mac_str,
    pad,
    pseudo_header,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_OPT_SOURCE_LL = 1
ND_OPT_TARGET_LL = 2
ARP_REQUEST = 1
ARP_REPLY = 2


def tagged_ethernet(dst: bytes, src: bytes, vid: int, ethertype: int) -> bytes:
    """An Ethernet header on VLAN vid, 0 meaning untagged."""
    return ethernet(dst, src, ethertype, vid or None)


def link_local(mac: bytes) -> ipaddress.IPv6Address:
    """The modified EUI-64 link-local address of a MAC (RFC 4291 appendix A):
    the address the interface would have on any link, unique as its MAC is."""
    m = bytearray(mac)
    m[0] ^= 0x02
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes(m[:3]) + b"\xff\xfe" + bytes(m[3:]))


def solicited_node(addr: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + addr.packed[13:])


def arp_probe(src_mac: bytes, vid: int, target: ipaddress.IPv4Address) -> bytes:
    """A broadcast ARP probe for target on VLAN vid (0 = untagged)."""
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, ARP_REQUEST) + src_mac + bytes(4) + bytes(6) + target.packed
    return pad(tagged_ethernet(BROADCAST, src_mac, vid, ETH_P_ARP) + arp)


def neighbor_solicitation(
    src_mac: bytes, vid: int, target: ipaddress.IPv6Address, source: ipaddress.IPv6Address | None = None
) -> bytes:
    """A multicast NS for target on VLAN vid, from `source` (default: the
    link-local address of src_mac). With source `::` it is a DAD probe (no
    source link-layer option, RFC 4861 4.3): tests use that to show why the
    agent never sends one."""
    src = link_local(src_mac) if source is None else source
    dst = solicited_node(target)
    options = b"" if src.is_unspecified else struct.pack("!BB", ND_OPT_SOURCE_LL, 1) + src_mac
    icmp = struct.pack("!BBHI", ND_NEIGHBOR_SOLICIT, 0, 0, 0) + target.packed + options
    pseudo = pseudo_header(src.packed, dst.packed, IPPROTO_ICMPV6, len(icmp))
    icmp = icmp[:2] + struct.pack("!H", checksum(pseudo + icmp)) + icmp[4:]
    # Hop limit 255: receivers drop ND messages with any other (RFC 4861 7.1.1).
    ip6 = struct.pack("!IHBB", 0x60000000, len(icmp), IPPROTO_ICMPV6, 255) + src.packed + dst.packed
    eth_dst = b"\x33\x33" + dst.packed[12:]
    return pad(tagged_ethernet(eth_dst, src_mac, vid, ETH_P_IPV6) + ip6 + icmp)


def probe(src_mac: bytes, vid: int, target: IPAddress) -> bytes:
    if isinstance(target, ipaddress.IPv4Address):
        return arp_probe(src_mac, vid, target)
    return neighbor_solicitation(src_mac, vid, target)


@dataclass(frozen=True)
class Reply:
    """A neighbour's answer: on VLAN vid, address is at mac."""

    vid: int
    address: IPAddress
    mac: str


def unicast_mac(raw: bytes) -> bool:
    return len(raw) == 6 and not raw[0] & 1 and any(raw)


def parse_reply(frame: bytes, vid: int = 0, verify_checksum: bool = True) -> Reply | None:
    """An ARP reply or a Neighbor Advertisement, else None.

    `vid` is the tag the kernel took out of the frame (PACKET_AUXDATA); a
    tag still in the frame is read from it instead."""
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    off = 14
    if ethertype in (ETH_P_8021Q, ETH_P_8021AD):
        if len(frame) < 18:
            return None
        tci, ethertype = struct.unpack_from("!HH", frame, 14)
        vid = tci & 0x0FFF
        off = 18
    if ethertype == ETH_P_ARP:
        return _parse_arp(frame, off, vid)
    if ethertype == ETH_P_IPV6:
        return _parse_na(frame, off, vid, verify_checksum)
    return None


def _parse_arp(frame: bytes, off: int, vid: int) -> Reply | None:
    if len(frame) < off + 28:
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, off)
    if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, ARP_REPLY):
        return None
    sha = frame[off + 8 : off + 14]
    spa = ipaddress.IPv4Address(frame[off + 14 : off + 18])
    if not unicast_mac(sha) or spa.is_unspecified or spa.is_multicast:
        return None
    return Reply(vid, spa, mac_str(sha))


def _parse_na(frame: bytes, off: int, vid: int, verify_checksum: bool) -> Reply | None:
    if len(frame) < off + 40 + 24:
        return None
    first, plen, nh, hop_limit = struct.unpack_from("!IHBB", frame, off)
    if first >> 28 != 6 or nh != IPPROTO_ICMPV6 or hop_limit != 255:
        return None  # only on-link senders can send hop limit 255 (RFC 4861 7.1.2)
    icmp = frame[off + 40 : off + 40 + plen]
    if len(icmp) < 24 or icmp[0] != ND_NEIGHBOR_ADVERT or icmp[1] != 0:
        return None
    if verify_checksum:
        pseudo = pseudo_header(frame[off + 8 : off + 24], frame[off + 24 : off + 40], IPPROTO_ICMPV6, len(icmp))
        if checksum(pseudo + icmp) != 0:
            return None
    target = ipaddress.IPv6Address(icmp[8:24])
    if target.is_multicast or target.is_unspecified:
        return None
    mac = frame[6:12]  # without a target link-layer option, the sender's own MAC
    i = 24
    while i + 2 <= len(icmp):
        opt_type, opt_len = icmp[i], icmp[i + 1] * 8
        if opt_len == 0 or i + opt_len > len(icmp):
            return None  # malformed options: drop the whole message (RFC 4861 7.1.2)
        if opt_type == ND_OPT_TARGET_LL and opt_len == 8:
            mac = icmp[i + 2 : i + 8]
        i += opt_len
    if not unicast_mac(mac):
        return None
    return Reply(vid, target, mac_str(mac))


# -- the socket filter -------------------------------------------------------
#
# Every frame the XDP program passes to the host reaches an ETH_P_ALL
# socket: broadcasts, floods, ARP requests of every tenant. A classic BPF
# filter keeps only ARP replies and Neighbor Advertisements, so the agent
# wakes up for answers only. The kernel takes the outer tag out of the frame
# before packet taps see it (its VID arrives in PACKET_AUXDATA), but a tag
# left in the frame is handled too.


def _block(l2: int) -> list[cbpf.Ins]:
    a, i = f"arp{l2}", f"ip6_{l2}"
    return [
        (cbpf.LD_H_ABS, 0, 0, l2 - 2),
        (cbpf.JEQ_K, a, 0, ETH_P_ARP),
        (cbpf.JEQ_K, i, "reject", ETH_P_IPV6),
        ("label", a, 0, 0),
        (cbpf.LD_H_ABS, 0, 0, l2 + 6),  # ARP operation
        (cbpf.JEQ_K, "accept", "reject", ARP_REPLY),
        ("label", i, 0, 0),
        (cbpf.LD_B_ABS, 0, 0, l2 + 6),  # IPv6 next header
        (cbpf.JEQ_K, 0, "reject", IPPROTO_ICMPV6),
        (cbpf.LD_B_ABS, 0, 0, l2 + 40),  # ICMPv6 type
        (cbpf.JEQ_K, "accept", "reject", ND_NEIGHBOR_ADVERT),
    ]


def reply_filter() -> list[tuple[int, int, int, int]]:
    """The cBPF program (code, jt, jf, k) accepting ARP replies and NAs."""
    return cbpf.tag_aware(_block)
