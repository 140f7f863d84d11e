"""The health-check frames the agent sends and the answers it parses, checked
against scapy's builders and dissectors; the socket filter run by the cBPF
interpreter of test_frames. No root needed."""

from __future__ import annotations

import ipaddress
import random

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from tests.agent.test_frames import _run_cbpf, check_jumps
from xdsr.agent import frames, probes
from xdsr.net.frames import ETH_ZLEN, mac_bytes

MAC = "02:1b:00:00:00:01"  # the LB node's trunk
MACB = mac_bytes(MAC)
MEMBER_MAC = "02:1b:02:00:00:07"
MEMBERB = mac_bytes(MEMBER_MAC)
HS4, M4 = ipaddress.IPv4Address("10.1.0.250"), ipaddress.IPv4Address("10.1.0.11")
HS6, M6 = ipaddress.IPv6Address("fd00:1::fa"), ipaddress.IPv6Address("fd00:1::b")
FAMILIES = pytest.mark.parametrize(("hs", "member"), [(HS4, M4), (HS6, M6)], ids=["v4", "v6"])
VIDS = pytest.mark.parametrize("vid", [0, 100], ids=["untagged", "tagged"])
# (tag in the frame, VID in auxdata): where the parsed VID comes from.
TAGS = pytest.mark.parametrize("tag", [None, 7], ids=["auxdata-vid", "in-frame-tag"])


def _recomputed(frame: bytes) -> bytes:
    """The frame as scapy rebuilds it with every checksum recomputed."""
    p = Ether(frame)
    layer: Packet = p
    while layer:
        for name in ("chksum", "cksum"):
            if name in layer.fields:
                delattr(layer, name)
        layer = layer.payload
    return bytes(p)


def _check_headers(raw: bytes, vid: int, src: probes.IPAddress, dst: probes.IPAddress, proto: int) -> Ether:
    assert len(raw) >= ETH_ZLEN
    p = Ether(raw)
    assert (p.src, p.dst) == (MAC, MEMBER_MAC)
    if vid:
        assert p[Dot1Q].vlan == vid
    else:
        assert Dot1Q not in p
    if src.version == 4:
        ip = p[IP]
        assert (ip.version, ip.ihl, ip.ttl, int(ip.flags), ip.frag, ip.id) == (4, 5, 64, 2, 0, 0)  # DF
        assert (ip.proto, ip.src, ip.dst) == (proto, str(src), str(dst))
    else:
        ip6 = p[IPv6]
        assert (ip6.nh, ip6.src, ip6.dst) == (proto, str(src), str(dst))
        assert ip6.hlim == (255 if p.haslayer(ICMPv6ND_NA) else 64)
    assert _recomputed(raw) == raw  # every checksum is the one scapy computes
    return p


# -- building ----------------------------------------------------------------


@FAMILIES
@VIDS
def test_tcp_syn(hs: probes.IPAddress, member: probes.IPAddress, vid: int) -> None:
    raw = probes.tcp_syn(MACB, MEMBERB, vid, hs, member, 40000, 80, 0x12345678)
    tcp = _check_headers(raw, vid, hs, member, 6)[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, int(tcp.flags)) == (40000, 80, 0x12345678, 0, 0x02)
    assert (tcp.window, tcp.dataofs, tcp.options) == (64240, 6, [("MSS", 1460 if hs.version == 4 else 1440)])


@FAMILIES
@VIDS
def test_tcp_rst_aborts_without_ack(hs: probes.IPAddress, member: probes.IPAddress, vid: int) -> None:
    raw = probes.tcp_rst(MACB, MEMBERB, vid, hs, member, 40000, 80, 0x12345679)
    tcp = _check_headers(raw, vid, hs, member, 6)[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, int(tcp.flags), tcp.dataofs) == (40000, 80, 0x12345679, 0, 4, 5)
    if vid == 0 and hs.version == 4:
        assert len(raw) == ETH_ZLEN  # 54 bytes, padded


@FAMILIES
@VIDS
def test_echo_request(hs: probes.IPAddress, member: probes.IPAddress, vid: int) -> None:
    raw = probes.echo_request(MACB, MEMBERB, vid, hs, member, 0x4242, 7)
    if hs.version == 4:
        icmp = _check_headers(raw, vid, hs, member, 1)[ICMP]
        assert (icmp.type, icmp.code, icmp.id, icmp.seq, icmp[Raw].load) == (8, 0, 0x4242, 7, b"xdsr-health")
    else:
        echo = _check_headers(raw, vid, hs, member, 58)[ICMPv6EchoRequest]
        assert (echo.type, echo.id, echo.seq, echo.data) == (128, 0x4242, 7, b"xdsr-health")


@FAMILIES
@VIDS
def test_udp_datagram(hs: probes.IPAddress, member: probes.IPAddress, vid: int) -> None:
    raw = probes.udp_datagram(MACB, MEMBERB, vid, hs, member, 40001, 53, payload=b"ping")
    udp = _check_headers(raw, vid, hs, member, 17)[UDP]
    assert (udp.sport, udp.dport, udp.len, udp[Raw].load) == (40001, 53, 12, b"ping")


@FAMILIES
def test_udp_checksum_zero_is_sent_as_all_ones(hs: probes.IPAddress, member: probes.IPAddress) -> None:
    # With payload x the sum is S + x: the checksum of payload 0 (~S) as
    # payload makes the sum all ones, whose checksum computes as 0.
    base = Ether(probes.udp_datagram(MACB, MEMBERB, 0, hs, member, 1, 2, payload=b"\0\0"))[UDP].chksum
    raw = probes.udp_datagram(MACB, MEMBERB, 0, hs, member, 1, 2, payload=base.to_bytes(2, "big"))
    assert Ether(raw)[UDP].chksum == 0xFFFF
    assert _recomputed(raw) == raw


@VIDS
def test_arp_reply_says_the_health_source_is_at_our_mac(vid: int) -> None:
    raw = probes.arp_reply(MACB, MEMBERB, vid, HS4, MEMBERB, M4)
    assert len(raw) == ETH_ZLEN
    p = Ether(raw)
    assert (p.src, p.dst, p.type if not vid else p[Dot1Q].type) == (MAC, MEMBER_MAC, 0x0806)
    assert (Dot1Q in p) == bool(vid)
    arp = p[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (2, MAC, str(HS4), MEMBER_MAC, str(M4))
    # What the agent's own resolver would learn from it.
    assert frames.parse_reply(raw, vid) == frames.Reply(vid, HS4, MAC)


@VIDS
def test_neighbor_advertisement_is_solicited_and_overrides(vid: int) -> None:
    raw = probes.neighbor_advertisement(MACB, MEMBERB, vid, HS6, M6, HS6)
    p = _check_headers(raw, vid, HS6, M6, 58)
    na = p[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt, p[ICMPv6NDOptDstLLAddr].lladdr) == (0, 1, 1, str(HS6), MAC)
    assert frames.parse_reply(raw, vid) == frames.Reply(vid, HS6, MAC)


def test_mixed_families_are_refused() -> None:
    with pytest.raises(ValueError):
        probes.tcp_syn(MACB, MEMBERB, 0, HS4, M6, 1, 2, 3)
    with pytest.raises(ValueError):
        probes.tcp_rst(MACB, MEMBERB, 0, HS6, M4, 1, 2, 3)
    with pytest.raises(ValueError):
        probes.echo_request(MACB, MEMBERB, 0, HS4, M6, 1, 2)
    with pytest.raises(ValueError):
        probes.udp_datagram(MACB, MEMBERB, 0, HS6, M4, 1, 2)


# -- parsing -----------------------------------------------------------------


def _eth(tag: int | None, src: str = MEMBER_MAC, dst: str = MAC) -> Packet:
    l2 = Ether(src=src, dst=dst)
    return l2 / Dot1Q(vlan=tag) if tag is not None else l2


def _ip(src: probes.IPAddress, dst: probes.IPAddress, **kw: object) -> Packet:
    return IP(src=str(src), dst=str(dst), **kw) if src.version == 4 else IPv6(src=str(src), dst=str(dst), **kw)


def _vid(tag: int | None) -> int:
    return 100 if tag is None else tag  # parse() is given 100 as the auxdata VID


def _syn_ack(hs: probes.IPAddress, member: probes.IPAddress, tag: int | None = None, flags: str = "SA") -> bytes:
    tcp = TCP(sport=80, dport=40000, flags=flags, seq=1000, ack=0x12345679, options=[("MSS", 1400), ("SAckOK", b"")])
    return bytes(_eth(tag) / _ip(member, hs) / tcp)


def _echo_reply(hs: probes.IPAddress, member: probes.IPAddress, tag: int | None = None) -> bytes:
    echo = ICMP(type=0, id=0x4242, seq=7) if hs.version == 4 else ICMPv6EchoReply(id=0x4242, seq=7)
    return bytes(_eth(tag) / _ip(member, hs) / echo / b"xdsr-health")


def _port_unreachable(hs: probes.IPAddress, member: probes.IPAddress, tag: int | None = None, quote: int = 48) -> bytes:
    sent = Ether(probes.udp_datagram(MACB, MEMBERB, 0, hs, member, 40001, 53))
    if hs.version == 4:
        return bytes(_eth(tag) / _ip(member, hs) / ICMP(type=3, code=3) / Raw(bytes(sent[IP])[:quote]))
    return bytes(_eth(tag) / _ip(member, hs) / ICMPv6DestUnreach(code=4) / Raw(bytes(sent[IPv6])[:quote]))


def _arp_request(tag: int | None = None, psrc: str = str(M4), hwsrc: str = MEMBER_MAC, op: int = 1) -> bytes:
    arp = ARP(op=op, hwsrc=hwsrc, psrc=psrc, pdst=str(HS4))
    return bytes(_eth(tag, dst="ff:ff:ff:ff:ff:ff") / arp)


def _ns(tag: int | None = None, src: str = str(M6), lladdr: str | None = "02:00:00:00:00:42", hlim: int = 255) -> bytes:
    ns = ICMPv6ND_NS(tgt=str(HS6))
    if lladdr:
        ns = ns / ICMPv6NDOptSrcLLAddr(lladdr=lladdr)
    ip6 = IPv6(src=src, dst=str(frames.solicited_node(HS6)), hlim=hlim)
    return bytes(_eth(tag, dst="33:33:ff:00:00:fa") / ip6 / ns)


@FAMILIES
@TAGS
def test_syn_ack_and_rst(hs: probes.IPAddress, member: probes.IPAddress, tag: int | None) -> None:
    a = probes.parse(_syn_ack(hs, member, tag), vid=100)
    assert a == probes.TcpSegment(_vid(tag), MEMBER_MAC, member, hs, 80, 40000, 1000, 0x12345679, 0x12)
    assert isinstance(a, probes.TcpSegment) and a.syn_ack and not a.rst
    r = probes.parse(_syn_ack(hs, member, tag, flags="RA"), vid=100)
    assert isinstance(r, probes.TcpSegment) and r.rst and not r.syn_ack and r.flags == 0x14


def test_ipv4_options_are_skipped() -> None:
    ip = IP(src=str(M4), dst=str(HS4), options=[IPOption_Router_Alert()])
    frame = bytes(Ether(dst=MAC) / ip / TCP(sport=80, dport=9))
    assert Ether(frame)[IP].ihl == 6
    a = probes.parse(frame)
    assert isinstance(a, probes.TcpSegment) and (a.sport, a.dport, a.src) == (80, 9, M4)


@FAMILIES
@TAGS
def test_echo_reply(hs: probes.IPAddress, member: probes.IPAddress, tag: int | None) -> None:
    a = probes.parse(_echo_reply(hs, member, tag), vid=100)
    assert a == probes.EchoReply(_vid(tag), MEMBER_MAC, member, hs, 0x4242, 7)


@FAMILIES
@TAGS
def test_port_unreachable_quotes_our_datagram(hs: probes.IPAddress, member: probes.IPAddress, tag: int | None) -> None:
    code = 3 if hs.version == 4 else 4
    a = probes.parse(_port_unreachable(hs, member, tag), vid=100)
    assert a == probes.Unreachable(_vid(tag), MEMBER_MAC, member, hs, code, hs, member, 17, 40001, 53)
    # A quote of the IP header alone still names the datagram, without ports.
    short = probes.parse(_port_unreachable(hs, member, tag, quote=20 if hs.version == 4 else 40), vid=100)
    assert short == probes.Unreachable(_vid(tag), MEMBER_MAC, member, hs, code, hs, member, 17, 0, 0)
    # Not even a whole IP header: nothing to match it with.
    assert probes.parse(_port_unreachable(hs, member, tag, quote=19)) is None


@TAGS
def test_arp_requests_are_questions(tag: int | None) -> None:
    q = probes.NeighborQuestion(_vid(tag), MEMBER_MAC, M4, HS4, MEMBER_MAC)
    assert probes.parse(_arp_request(tag), vid=100) == q
    probe = probes.parse(_arp_request(tag, psrc="0.0.0.0"), vid=100)
    assert isinstance(probe, probes.NeighborQuestion) and probe.asker == ipaddress.IPv4Address("0.0.0.0")
    assert probes.parse(_arp_request(tag, hwsrc="ff:ff:ff:ff:ff:ff")) is None
    assert probes.parse(_arp_request(tag, op=2)) is None


@TAGS
def test_neighbor_solicitations_are_questions(tag: int | None) -> None:
    # The option, not the Ethernet source, says where to answer.
    assert probes.parse(_ns(tag), vid=100) == probes.NeighborQuestion(
        _vid(tag), MEMBER_MAC, M6, HS6, "02:00:00:00:00:42"
    )
    # Without one, the Ethernet source; a DAD probe from :: has none.
    unspecified = ipaddress.IPv6Address("::")
    assert probes.parse(_ns(tag, src="::", lladdr=None), vid=100) == probes.NeighborQuestion(
        _vid(tag), MEMBER_MAC, unspecified, HS6, MEMBER_MAC
    )
    assert probes.parse(_ns(tag, src="::")) is None  # RFC 4861 7.1.1: no option from ::
    assert probes.parse(_ns(tag, hlim=64)) is None  # not from on-link
    assert probes.parse(_ns(tag, hlim=254)) is None


def _set(frame: bytes, offset: int, value: int) -> bytes:
    raw = bytearray(frame)
    raw[offset] = value
    return bytes(raw)


@FAMILIES
def test_wrong_l4_checksums_are_rejected_unless_told_otherwise(hs: probes.IPAddress, member: probes.IPAddress) -> None:
    l4 = 14 + (20 if hs.version == 4 else 40)
    for frame, csum_at in [(_syn_ack(hs, member), l4 + 16), (_echo_reply(hs, member), l4 + 2)]:
        bad = _set(frame, csum_at, frame[csum_at] ^ 0x01)
        assert probes.parse(frame) is not None
        assert probes.parse(bad) is None
        assert probes.parse(bad, verify_checksum=False) == probes.parse(frame)


def test_wrong_ipv4_header_checksum_is_always_rejected() -> None:
    frame = _syn_ack(HS4, M4)
    bad = _set(frame, 14 + 10, frame[14 + 10] ^ 0x01)
    assert probes.parse(bad) is None
    assert probes.parse(bad, verify_checksum=False) is None


@pytest.mark.parametrize(
    "frame",
    [
        bytes(Ether(dst=MAC) / IP(src=str(M4), dst=str(HS4), frag=1) / TCP(flags="SA")),
        bytes(Ether(dst=MAC) / IP(src=str(M4), dst=str(HS4), flags="MF") / TCP(flags="SA")),
        bytes(Ether(dst=MAC) / IP(src=str(M4), dst=str(HS4), ihl=4) / TCP(flags="SA")),
        bytes(Ether(dst=MAC) / IP(src=str(M4), dst=str(HS4), len=200) / TCP(flags="SA")),
        bytes(Ether(dst=MAC) / IPv6(src=str(M6), dst=str(HS6), plen=200) / TCP(flags="SA")),
        bytes(Ether(dst=MAC) / IPv6(src=str(M6), dst=str(HS6)) / IPv6ExtHdrHopByHop() / TCP(flags="SA")),
        bytes(Ether(dst=MAC) / IP(src=str(M4), dst=str(HS4)) / UDP(sport=53, dport=40001) / b"answer"),
        bytes(Ether(dst=MAC) / IPv6(src=str(M6), dst=str(HS6)) / UDP(sport=53, dport=40001) / b"answer"),
        bytes(Ether(dst=MAC) / IP(src=str(M4), dst=str(HS4)) / ICMP(type=8)),
        bytes(Ether(dst=MAC) / IPv6(src=str(M6), dst=str(HS6)) / ICMPv6EchoRequest()),
        bytes(Ether(dst=MAC) / IPv6(src=str(M6), dst=str(HS6)) / ICMP(type=0)),  # ICMPv4 over IPv6
        probes.neighbor_advertisement(MACB, MEMBERB, 0, HS6, M6, HS6),
        probes.arp_reply(MACB, MEMBERB, 0, HS4, MEMBERB, M4),
        bytes(Ether(dst=MAC, type=0x88CC) / (b"\0" * 50)),
        _syn_ack(HS4, M4)[:-1],
        _syn_ack(HS6, M6)[:-1],
        b"",
        b"\x00" * 13,
    ],
    ids=[
        "v4-frag-offset",
        "v4-more-fragments",
        "v4-ihl-4",
        "v4-len-beyond-frame",
        "v6-plen-beyond-frame",
        "v6-ext-header",
        "v4-udp",
        "v6-udp",
        "v4-echo-request",
        "v6-echo-request",
        "v6-icmpv4",
        "na",
        "arp-reply",
        "lldp",
        "v4-truncated",
        "v6-truncated",
        "empty",
        "runt",
    ],
)
def test_rejects_what_is_not_an_answer(frame: bytes) -> None:
    assert probes.parse(frame) is None
    assert probes.parse(frame, verify_checksum=False) is None


def _answers() -> list[bytes]:
    out = [_arp_request(), _arp_request(7), _ns(), _ns(7, src="::", lladdr=None)]
    for hs, member in [(HS4, M4), (HS6, M6)]:
        for tag in (None, 7):
            out += [_syn_ack(hs, member, tag), _echo_reply(hs, member, tag), _port_unreachable(hs, member, tag)]
    return out


def test_truncated_answers_are_rejected() -> None:
    for frame in _answers():
        assert probes.parse(frame) is not None
        for n in range(len(frame)):
            assert probes.parse(frame[:n]) is None, (frame.hex(), n)
            assert probes.parse(frame[:n], verify_checksum=False) is None, (frame.hex(), n)


def test_parse_never_raises() -> None:
    rng = random.Random(20240611)
    for _ in range(4000):
        # Mostly with an ethertype that gets past the first check.
        head = rng.choice([b"", b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00"])
        frame = rng.randbytes(12) + head + rng.randbytes(rng.randrange(0, 100))
        probes.parse(frame, rng.randrange(4096), verify_checksum=rng.random() < 0.5)
    for frame in _answers():
        for _ in range(300):
            raw = bytearray(frame)
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            n = rng.randrange(len(raw) + 1)
            probes.parse(bytes(raw), verify_checksum=False)
            probes.parse(bytes(raw[:n]), verify_checksum=False)
            probes.parse(bytes(raw))


# -- the socket filter -------------------------------------------------------


def test_socket_filter_keeps_answers_and_questions() -> None:
    prog = probes.health_filter()
    check_jumps(prog)
    accepted = {
        "arp-request": _arp_request(),
        "tagged-arp-request": _arp_request(100),
        "v4-tcp": _syn_ack(HS4, M4),
        "tagged-v4-tcp": _syn_ack(HS4, M4, 100),
        "v6-tcp": _syn_ack(HS6, M6),
        "tagged-v6-tcp": _syn_ack(HS6, M6, 100),
        "v4-icmp": _echo_reply(HS4, M4),
        "tagged-v4-icmp-unreachable": _port_unreachable(HS4, M4, 100),
        "v6-icmp": _echo_reply(HS6, M6),
        "tagged-v6-icmp-unreachable": _port_unreachable(HS6, M6, 100),
        "ns": _ns(),
        "tagged-ns": _ns(100),
    }
    rejected = {
        "arp-reply": _arp_request(op=2),
        "tagged-arp-reply": _arp_request(100, op=2),
        "our-arp-reply": probes.arp_reply(MACB, MEMBERB, 100, HS4, MEMBERB, M4),
        "v4-udp": probes.udp_datagram(MEMBERB, MACB, 0, M4, HS4, 53, 40001),
        "tagged-v4-udp": probes.udp_datagram(MEMBERB, MACB, 100, M4, HS4, 53, 40001),
        "v6-udp": probes.udp_datagram(MEMBERB, MACB, 0, M6, HS6, 53, 40001),
        "tagged-v6-udp": probes.udp_datagram(MEMBERB, MACB, 100, M6, HS6, 53, 40001),
        "v6-ext-header": bytes(Ether(dst=MAC) / IPv6() / IPv6ExtHdrHopByHop() / TCP()),
        "lldp": bytes(Ether(dst=MAC, type=0x88CC) / (b"\0" * 50)),
        "runt": b"\0" * 10,
    }
    assert {k: _run_cbpf(prog, p) > 0 for k, p in accepted.items()} == dict.fromkeys(accepted, True)
    assert {k: _run_cbpf(prog, p) > 0 for k, p in rejected.items()} == dict.fromkeys(rejected, False)
