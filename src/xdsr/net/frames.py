"""Frame bytes: MAC addresses, the Ethernet header with its 802.1Q tag, and
the Internet checksum (RFC 1071) with the L4 pseudo-header. Pure functions,
no I/O; stdlib only."""

from __future__ import annotations

import struct

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8

ETH_ALEN = 6
ETH_HLEN = 14
VLAN_HLEN = 4
ETH_ZLEN = 60  # minimum frame length without FCS; shorter frames get padded
BROADCAST = b"\xff" * ETH_ALEN


def mac_bytes(mac: str) -> bytes:
    """The six bytes of a MAC written as "02:00:00:00:00:01"."""
    return bytes(int(p, 16) for p in mac.split(":"))


def mac_str(raw: bytes) -> str:
    """Six bytes as a MAC string, "02:00:00:00:00:01"."""
    return ":".join(f"{b:02x}" for b in raw)


def vlan_tag(vid: int) -> bytes:
    """An 802.1Q tag (TPID and TCI, priority 0) for VLAN vid."""
    return struct.pack("!HH", ETH_P_8021Q, vid & 0x0FFF)


def ethernet(dst: bytes, src: bytes, ethertype: int, vid: int | None = None) -> bytes:
    """An Ethernet header, with an 802.1Q tag in the frame unless vid is None."""
    tag = vlan_tag(vid) if vid is not None else b""
    return dst + src + tag + struct.pack("!H", ethertype)


def pad(frame: bytes) -> bytes:
    """The frame padded to the Ethernet minimum (ETH_ZLEN)."""
    return frame + bytes(max(0, ETH_ZLEN - len(frame)))


def fold(total: int) -> int:
    """A one's complement sum folded to 16 bits."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071), as a big-endian 16-bit value; 0 over
    data that carries a correct one."""
    if len(data) % 2:
        data += b"\0"
    return ~fold(sum(struct.unpack(f"!{len(data) // 2}H", data))) & 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The pseudo-header a TCP, UDP or ICMPv6 checksum covers, for packed
    IPv4 (RFC 793) or IPv6 (RFC 8200 8.1) addresses."""
    if len(src) == 4:
        return src + dst + struct.pack("!xBH", proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)
