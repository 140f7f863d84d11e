"""Health-check frames sent from a health source address, and their answers.

The agent checks a member from a "health source": an address it owns on the
member's VLAN without having any IP stack there. So it builds the probes
(TCP SYN, ICMP echo, UDP datagram) as whole Ethernet frames, reads what
comes back from an AF_PACKET socket, and answers the member's ARP requests
and Neighbor Solicitations for the health source itself: a member cannot
send a SYN-ACK or an echo reply to an address it cannot resolve. Pure
functions, no I/O.

* A TCP check is half-open: SYN, then SYN-ACK (up) or RST (down), then a RST
  from us so the member drops the half-open connection at once instead of
  retransmitting its SYN-ACK into the void.
* A UDP check is down when an ICMP port unreachable quotes our datagram;
  `Unreachable` carries the quoted addresses and ports to match it.
* A member on a VXLAN or Geneve segment is checked with the same frames,
  encapsulated (`encapsulate`) from the node's tunnel endpoint to the
  member's; its host's endpoint sends the answers back encapsulated to the
  node's, and `parse` takes them out (`Encapsulated`, with the VNI and the
  outer source to answer a member's ARP through the same tunnel).
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from dataclasses import dataclass, replace

from xdsr.agent import frames
from xdsr.net import frames as eth
from xdsr.net import sockfilter as cbpf

IPAddress = frames.IPAddress

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMPV6_DEST_UNREACH = 1
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

TTL = 64
HEALTH_PAYLOAD = b"xdsr-health"
_IP_DF = 0x4000
_IP_MF = 0x2000
_IP_OFFSET = 0x1FFF
_NA_SOLICITED_OVERRIDE = 0x60000000  # S and O; R clear: the health source is no router

# Overlays: the UDP ports of RFC 7348 and RFC 8926, VXLAN's I flag (a valid
# VNI), and Geneve's protocol type for an Ethernet frame.
VXLAN_PORT = 4789
GENEVE_PORT = 6081
VXLAN_FLAG_VNI = 0x08
ETH_P_TEB = 0x6558
_GENEVE_OAM = 0x80
# RFC 7348 5: the source port from a hash of the inner flow, in the dynamic range.
TUNNEL_SPORTS = (49152, 65535)


# -- building ----------------------------------------------------------------


def _l4_checksum(src: IPAddress, dst: IPAddress, proto: int, l4: bytes) -> int:
    """The checksum of l4 with its pseudo-header (none for ICMP over IPv4);
    0 over a segment that carries a correct one."""
    if proto == IPPROTO_ICMP:
        return eth.checksum(l4)
    return eth.checksum(eth.pseudo_header(src.packed, dst.packed, proto, len(l4)) + l4)


def _ip_frame(
    src_mac: bytes,
    dst_mac: bytes,
    vid: int,
    src: IPAddress,
    dst: IPAddress,
    proto: int,
    l4: bytes,
    csum_at: int,
    hop_limit: int = TTL,
    pad_to_min: bool = True,
) -> bytes:
    if src.version != dst.version:
        raise ValueError(f"{src} and {dst} are not of the same address family")
    csum = _l4_checksum(src, dst, proto, l4)
    if proto == IPPROTO_UDP:
        csum = csum or 0xFFFF  # 0 means "no checksum" to UDP (RFC 768) and is invalid over IPv6
    l4 = l4[:csum_at] + struct.pack("!H", csum) + l4[csum_at + 2 :]
    if src.version == 4:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 0, _IP_DF, hop_limit, proto, 0) + src.packed + dst.packed
        ip = ip[:10] + struct.pack("!H", eth.checksum(ip)) + ip[12:]
        ethertype = eth.ETH_P_IP
    else:
        ip = struct.pack("!IHBB", 0x60000000, len(l4), proto, hop_limit) + src.packed + dst.packed
        ethertype = eth.ETH_P_IPV6
    frame = frames.tagged_ethernet(dst_mac, src_mac, vid, ethertype) + ip + l4
    return eth.pad(frame) if pad_to_min else frame


def tcp_syn(
    src_mac: bytes, dst_mac: bytes, vid: int, src: IPAddress, dst: IPAddress, sport: int, dport: int, seq: int
) -> bytes:
    """A SYN with an MSS option: some stacks assume 536 without one."""
    mss = 1460 if src.version == 4 else 1440  # a 1500-byte MTU less the IP and TCP headers
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 6 << 4, TCP_SYN, 64240, 0, 0) + struct.pack("!BBH", 2, 4, mss)
    return _ip_frame(src_mac, dst_mac, vid, src, dst, IPPROTO_TCP, tcp, 16)


def tcp_rst(
    src_mac: bytes, dst_mac: bytes, vid: int, src: IPAddress, dst: IPAddress, sport: int, dport: int, seq: int
) -> bytes:
    """A RST without ACK: after a SYN-ACK the member accepts it when seq is
    exactly the one it acknowledged (the SYN's seq + 1, RFC 5961 3.2)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, TCP_RST, 0, 0, 0)
    return _ip_frame(src_mac, dst_mac, vid, src, dst, IPPROTO_TCP, tcp, 16)


def echo_request(
    src_mac: bytes,
    dst_mac: bytes,
    vid: int,
    src: IPAddress,
    dst: IPAddress,
    ident: int,
    seq: int,
    payload: bytes = HEALTH_PAYLOAD,
) -> bytes:
    if src.version == 4:
        icmp = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq) + payload
        return _ip_frame(src_mac, dst_mac, vid, src, dst, IPPROTO_ICMP, icmp, 2)
    icmp = struct.pack("!BBHHH", ICMPV6_ECHO_REQUEST, 0, 0, ident, seq) + payload
    return _ip_frame(src_mac, dst_mac, vid, src, dst, frames.IPPROTO_ICMPV6, icmp, 2)


def udp_datagram(
    src_mac: bytes,
    dst_mac: bytes,
    vid: int,
    src: IPAddress,
    dst: IPAddress,
    sport: int,
    dport: int,
    payload: bytes = HEALTH_PAYLOAD,
) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return _ip_frame(src_mac, dst_mac, vid, src, dst, IPPROTO_UDP, udp, 6)


def arp_reply(
    src_mac: bytes,
    dst_mac: bytes,
    vid: int,
    sender_ip: ipaddress.IPv4Address,
    target_mac: bytes,
    target_ip: ipaddress.IPv4Address,
) -> bytes:
    """An ARP reply: "sender_ip is at src_mac", unicast to dst_mac (the asker)."""
    arp = struct.pack("!HHBBH", 1, eth.ETH_P_IP, 6, 4, frames.ARP_REPLY) + src_mac + sender_ip.packed
    arp += target_mac + target_ip.packed
    return eth.pad(frames.tagged_ethernet(dst_mac, src_mac, vid, eth.ETH_P_ARP) + arp)


def neighbor_advertisement(
    src_mac: bytes,
    dst_mac: bytes,
    vid: int,
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    target: ipaddress.IPv6Address,
) -> bytes:
    """A solicited NA: "target is at src_mac" (Target Link-Layer Address
    option). Hop limit 255, or receivers drop it (RFC 4861 7.1.2)."""
    icmp = (
        struct.pack("!BBHI", frames.ND_NEIGHBOR_ADVERT, 0, 0, _NA_SOLICITED_OVERRIDE)
        + target.packed
        + struct.pack("!BB", frames.ND_OPT_TARGET_LL, 1)
        + src_mac
    )
    return _ip_frame(src_mac, dst_mac, vid, src, dst, frames.IPPROTO_ICMPV6, icmp, 2, hop_limit=255)


@dataclass(frozen=True)
class Tunnel:
    """The outer headers around a frame to a member on an overlay: from this
    node's tunnel endpoint to the member's, on the member's VNI."""

    kind: str  # vxlan | geneve
    vni: int
    src: IPAddress  # this node's endpoint
    dst: IPAddress  # the member's host's endpoint
    src_mac: bytes  # the trunk's MAC
    dst_mac: bytes  # the underlay next hop towards dst
    port: int  # UDP destination port: VXLAN_PORT, GENEVE_PORT or the attachment's own
    sport: int  # UDP source port: the flow's entropy (the underlay's ECMP hashes it)
    vid: int = 0  # the underlay's VLAN, 0 = untagged


def tunnel_sport(*flow: object) -> int:
    """A stable source port for a flow, in the dynamic range (RFC 7348 5)."""
    lo, hi = TUNNEL_SPORTS
    return lo + zlib.crc32(repr(flow).encode()) % (hi - lo + 1)


def encapsulate(t: Tunnel, inner: bytes) -> bytes:
    """inner (a whole Ethernet frame) in VXLAN (RFC 7348) or Geneve without
    options (RFC 8926) over UDP, IPv4 or IPv6. The outer UDP checksum is
    filled in on both families: optional over IPv4, required over IPv6
    unless both ends agreed to zero (RFC 6935), which the node cannot know."""
    if t.kind == "vxlan":
        header = struct.pack("!B3xI", VXLAN_FLAG_VNI, t.vni << 8)
    elif t.kind == "geneve":
        header = struct.pack("!BBHI", 0, 0, ETH_P_TEB, t.vni << 8)
    else:
        raise ValueError(f"{t.kind!r} is not a tunnel type (vxlan, geneve)")
    udp = struct.pack("!HHHH", t.sport, t.port, 8 + len(header) + len(inner), 0) + header + inner
    return _ip_frame(t.src_mac, t.dst_mac, t.vid, t.src, t.dst, IPPROTO_UDP, udp, 6, pad_to_min=False)


# -- parsing -----------------------------------------------------------------


@dataclass(frozen=True)
class TcpSegment:
    vid: int
    src_mac: str
    src: IPAddress
    dst: IPAddress
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int

    @property
    def syn_ack(self) -> bool:
        return self.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK

    @property
    def rst(self) -> bool:
        return bool(self.flags & TCP_RST)


@dataclass(frozen=True)
class EchoReply:
    vid: int
    src_mac: str
    src: IPAddress
    dst: IPAddress
    ident: int
    seq: int


@dataclass(frozen=True)
class Unreachable:
    """An ICMP destination unreachable from src (a router or the member),
    about the datagram it quotes."""

    vid: int
    src_mac: str
    src: IPAddress
    dst: IPAddress
    code: int
    orig_src: IPAddress
    orig_dst: IPAddress
    orig_proto: int
    orig_sport: int
    orig_dport: int


@dataclass(frozen=True)
class NeighborQuestion:
    """An ARP request or a Neighbor Solicitation: who has target? An asker
    of 0.0.0.0 or :: is probing for target (RFC 5227, DAD): it has no address
    to be answered at."""

    vid: int
    src_mac: str
    asker: IPAddress
    target: IPAddress
    asker_mac: str


Answer = TcpSegment | EchoReply | Unreachable | NeighborQuestion


@dataclass(frozen=True)
class Encapsulated:
    """An answer that came through a tunnel: `inner` from a member on VNI
    `vni`, sent by the endpoint `outer_src` (at `outer_src_mac` on underlay
    VLAN `vid`) to `outer_dst` on UDP port `port`."""

    kind: str  # vxlan | geneve
    vni: int
    vid: int
    outer_src_mac: str
    outer_src: IPAddress
    outer_dst: IPAddress
    port: int
    inner: Answer


# UDP destination port -> tunnel type: which datagrams parse() opens.
TunnelPorts = dict[int, str]
NO_TUNNELS: TunnelPorts = {}


def parse(
    frame: bytes, vid: int = 0, verify_checksum: bool = True, tunnels: TunnelPorts = NO_TUNNELS
) -> Answer | Encapsulated | None:
    """What came back from a member, else None; never raises.

    `vid` is the tag the kernel took out of the frame (PACKET_AUXDATA); a
    tag still in the frame is read from it instead. verify_checksum=False
    when PACKET_AUXDATA says the L4 checksum was already verified, or is not
    filled in yet (a local sender's offload, which a packet tap precedes).
    A UDP datagram to a port of `tunnels` is opened and what it carries
    parsed (Encapsulated); the inner checksums are verified as the outer
    ones would be (an encapsulating host that offloads leaves both partial)."""
    return _parse(frame, vid, verify_checksum, tunnels)


def _parse(frame: bytes, vid: int, verify_checksum: bool, tunnels: TunnelPorts) -> Answer | Encapsulated | None:
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    off = 14
    if ethertype in (eth.ETH_P_8021Q, eth.ETH_P_8021AD):
        if len(frame) < 18:
            return None
        tci, ethertype = struct.unpack_from("!HH", frame, 14)
        vid = tci & 0x0FFF
        off = 18
    mac = eth.mac_str(frame[6:12])
    if ethertype == eth.ETH_P_ARP:
        return _parse_arp(frame, off, vid, mac)
    if ethertype == eth.ETH_P_IP:
        return _parse_ipv4(frame, off, vid, mac, verify_checksum, tunnels)
    if ethertype == eth.ETH_P_IPV6:
        return _parse_ipv6(frame, off, vid, mac, verify_checksum, tunnels)
    return None


def _parse_arp(frame: bytes, off: int, vid: int, mac: str) -> Answer | None:
    if len(frame) < off + 28:
        return None
    if struct.unpack_from("!HHBBH", frame, off) != (1, eth.ETH_P_IP, 6, 4, frames.ARP_REQUEST):
        return None
    sha = frame[off + 8 : off + 14]
    if not frames.unicast_mac(sha):
        return None  # the answer goes unicast to it
    spa = ipaddress.IPv4Address(frame[off + 14 : off + 18])
    tpa = ipaddress.IPv4Address(frame[off + 24 : off + 28])
    return NeighborQuestion(vid, mac, spa, tpa, eth.mac_str(sha))


def _parse_ipv4(
    frame: bytes, off: int, vid: int, mac: str, verify_checksum: bool, tunnels: TunnelPorts
) -> Answer | Encapsulated | None:
    if len(frame) < off + 20 or frame[off] >> 4 != 4:
        return None
    hlen = (frame[off] & 0x0F) * 4
    total, frag, ttl, proto = struct.unpack_from("!2xH2xHBB", frame, off)
    if hlen < 20 or total < hlen or off + total > len(frame):
        return None
    if frag & (_IP_MF | _IP_OFFSET):
        return None  # a fragment's L4 checksum covers bytes we do not have
    # The stack always fills in the header checksum itself: only L4 ones are offloaded.
    if eth.checksum(frame[off : off + hlen]) != 0:
        return None
    src = ipaddress.IPv4Address(frame[off + 12 : off + 16])
    dst = ipaddress.IPv4Address(frame[off + 16 : off + 20])
    l4 = frame[off + hlen : off + total]
    if proto == IPPROTO_UDP and tunnels:
        return _decapsulate(l4, vid, mac, src, dst, verify_checksum, tunnels)
    return _parse_l4(l4, vid, mac, src, dst, proto, ttl, verify_checksum)


def _parse_ipv6(
    frame: bytes, off: int, vid: int, mac: str, verify_checksum: bool, tunnels: TunnelPorts
) -> Answer | Encapsulated | None:
    if len(frame) < off + 40 or frame[off] >> 4 != 6:
        return None
    plen, nh, hop_limit = struct.unpack_from("!HBB", frame, off + 4)
    if off + 40 + plen > len(frame):
        return None
    src = ipaddress.IPv6Address(frame[off + 8 : off + 24])
    dst = ipaddress.IPv6Address(frame[off + 24 : off + 40])
    l4 = frame[off + 40 : off + 40 + plen]
    if nh == IPPROTO_UDP and tunnels:
        return _decapsulate(l4, vid, mac, src, dst, verify_checksum, tunnels)
    return _parse_l4(l4, vid, mac, src, dst, nh, hop_limit, verify_checksum)


def _decapsulate(
    udp: bytes, vid: int, mac: str, src: IPAddress, dst: IPAddress, verify_checksum: bool, tunnels: TunnelPorts
) -> Encapsulated | None:
    """The answer inside a VXLAN or Geneve datagram to one of our tunnel ports."""
    if len(udp) < 8:
        return None
    dport, length = struct.unpack_from("!2xHH", udp)
    kind = tunnels.get(dport)
    if kind is None or not 8 <= length <= len(udp):
        return None
    body = udp[8:length]
    # The outer UDP checksum (optional over IPv4, often left to offload) is
    # not checked: the inner frame's own checksums are.
    if kind == "vxlan":
        if len(body) < 8 or not body[0] & VXLAN_FLAG_VNI:
            return None
        vni = struct.unpack_from("!I", body, 4)[0] >> 8
        inner = body[8:]
    else:
        if len(body) < 8:
            return None
        ver_optlen, flags, proto, vni_word = struct.unpack_from("!BBHI", body)
        hlen = 8 + (ver_optlen & 0x3F) * 4
        # Version 0 only; an OAM frame is not a member's answer; options of
        # any length are skipped (nothing we sent asked for one).
        if ver_optlen >> 6 != 0 or flags & _GENEVE_OAM or proto != ETH_P_TEB or len(body) < hlen:
            return None
        vni, inner = vni_word >> 8, body[hlen:]
    answer = _parse(inner, 0, verify_checksum, NO_TUNNELS)
    if answer is None or isinstance(answer, Encapsulated):
        return None
    return Encapsulated(kind, vni, vid, mac, src, dst, dport, answer)


def _parse_l4(
    l4: bytes,
    vid: int,
    mac: str,
    src: IPAddress,
    dst: IPAddress,
    proto: int,
    hop_limit: int,
    verify_checksum: bool,
) -> Answer | None:
    if proto not in (IPPROTO_TCP, IPPROTO_ICMP if src.version == 4 else frames.IPPROTO_ICMPV6) or len(l4) < 8:
        return None  # extension headers and the rest: nothing we asked for
    if verify_checksum and _l4_checksum(src, dst, proto, l4) != 0:
        return None
    if proto == IPPROTO_TCP:
        if len(l4) < 20 or not 20 <= (l4[12] >> 4) * 4 <= len(l4):
            return None
        sport, dport, seq, ack = struct.unpack_from("!HHII", l4)
        return TcpSegment(vid, mac, src, dst, sport, dport, seq, ack, l4[13])
    kind, code = l4[0], l4[1]
    v4 = src.version == 4
    if kind == (ICMP_ECHO_REPLY if v4 else ICMPV6_ECHO_REPLY) and code == 0:
        ident, seq = struct.unpack_from("!HH", l4, 4)
        return EchoReply(vid, mac, src, dst, ident, seq)
    if kind == (ICMP_DEST_UNREACH if v4 else ICMPV6_DEST_UNREACH):
        return _parse_quote(l4[8:], Unreachable(vid, mac, src, dst, code, src, dst, 0, 0, 0))
    if kind == frames.ND_NEIGHBOR_SOLICIT and code == 0 and not v4 and hop_limit == 255:
        return _parse_ns(l4, vid, mac, src)  # only on-link senders can send hop limit 255
    return None


def _parse_quote(quote: bytes, base: Unreachable) -> Unreachable | None:
    """base with the original datagram's header, as quoted (RFC 792, 4443)."""
    orig_src: IPAddress
    orig_dst: IPAddress
    if base.src.version == 4:
        if len(quote) < 20 or quote[0] >> 4 != 4 or quote[0] & 0x0F < 5:
            return None
        hlen = (quote[0] & 0x0F) * 4
        frag, proto = struct.unpack_from("!6xHxB", quote)
        orig_src, orig_dst = ipaddress.IPv4Address(quote[12:16]), ipaddress.IPv4Address(quote[16:20])
        has_l4 = not frag & _IP_OFFSET
    else:
        if len(quote) < 40 or quote[0] >> 4 != 6:
            return None
        hlen, proto = 40, quote[6]
        orig_src, orig_dst = ipaddress.IPv6Address(quote[8:24]), ipaddress.IPv6Address(quote[24:40])
        has_l4 = True
    sport = dport = 0
    if has_l4 and proto in (IPPROTO_TCP, IPPROTO_UDP) and len(quote) >= hlen + 4:
        sport, dport = struct.unpack_from("!HH", quote, hlen)
    return replace(base, orig_src=orig_src, orig_dst=orig_dst, orig_proto=proto, orig_sport=sport, orig_dport=dport)


def _parse_ns(icmp: bytes, vid: int, mac: str, src: IPAddress) -> NeighborQuestion | None:
    if len(icmp) < 24 or src.is_multicast:
        return None
    target = ipaddress.IPv6Address(icmp[8:24])
    if target.is_multicast:
        return None
    asker_mac = eth.mac_bytes(mac)  # without a source link-layer option
    i = 24
    while i + 2 <= len(icmp):
        opt_type, opt_len = icmp[i], icmp[i + 1] * 8
        if opt_len == 0 or i + opt_len > len(icmp):
            return None  # malformed options: drop the whole message (RFC 4861 7.1.1)
        if opt_type == frames.ND_OPT_SOURCE_LL and opt_len == 8:
            if src.is_unspecified:
                return None  # a DAD probe carries none (RFC 4861 7.1.1)
            asker_mac = icmp[i + 2 : i + 8]
        i += opt_len
    if not frames.unicast_mac(asker_mac):
        return None
    return NeighborQuestion(vid, mac, src, target, eth.mac_str(asker_mac))


# -- the socket filter -------------------------------------------------------
#
# The health socket wakes up only for what can be an answer or a question
# about the health source: ARP requests, and TCP and ICMP(v6) over either
# family. UDP answers are not needed (a UDP check fails on an ICMP
# unreachable, not on a reply), except datagrams to the node's tunnel ports,
# which carry the answers of members on overlays: an outer IPv4 header
# without options (what every endpoint sends) and an IPv6 one without
# extension headers. Tags as in frames.reply_filter.


def _udp_to(at: int, ports: tuple[int, ...], label: str) -> list[cbpf.Ins]:
    """At `label`: accept a UDP destination port (the halfword at `at`) of ports."""
    if not ports:
        return []
    out: list[cbpf.Ins] = [("label", label, 0, 0), (cbpf.LD_H_ABS, 0, 0, at)]
    for i, port in enumerate(ports):
        out.append((cbpf.JEQ_K, "accept", "reject" if i == len(ports) - 1 else 0, port))
    return out


def _health_block(l3: int, ports: tuple[int, ...]) -> list[cbpf.Ins]:
    a, v4, v6 = f"arp{l3}", f"ip4_{l3}", f"ip6_{l3}"
    u4, u6 = (f"udp4_{l3}", f"udp6_{l3}") if ports else ("reject", "reject")
    return [
        (cbpf.LD_H_ABS, 0, 0, l3 - 2),
        (cbpf.JEQ_K, a, 0, eth.ETH_P_ARP),
        (cbpf.JEQ_K, v4, 0, eth.ETH_P_IP),
        (cbpf.JEQ_K, v6, "reject", eth.ETH_P_IPV6),
        ("label", a, 0, 0),
        (cbpf.LD_H_ABS, 0, 0, l3 + 6),  # ARP operation
        (cbpf.JEQ_K, "accept", "reject", frames.ARP_REQUEST),
        ("label", v4, 0, 0),
        (cbpf.LD_B_ABS, 0, 0, l3 + 9),  # IPv4 protocol
        (cbpf.JEQ_K, "accept", 0, IPPROTO_TCP),
        (cbpf.JEQ_K, "accept", 0, IPPROTO_ICMP),
        (cbpf.JEQ_K, u4, "reject", IPPROTO_UDP),
        *_udp_to(l3 + 20 + 2, ports, u4),  # UDP destination port
        ("label", v6, 0, 0),
        (cbpf.LD_B_ABS, 0, 0, l3 + 6),  # IPv6 next header
        (cbpf.JEQ_K, "accept", 0, IPPROTO_TCP),
        (cbpf.JEQ_K, "accept", 0, frames.IPPROTO_ICMPV6),
        (cbpf.JEQ_K, u6, "reject", IPPROTO_UDP),
        *_udp_to(l3 + 40 + 2, ports, u6),
    ]


def health_filter(tunnel_ports: tuple[int, ...] = ()) -> list[tuple[int, int, int, int]]:
    """The cBPF program (code, jt, jf, k) for the health socket; with
    tunnel_ports it also takes UDP datagrams to them."""
    return cbpf.tag_aware(lambda l3: _health_block(l3, tunnel_ports))
