"""Health checks of members on VXLAN and Geneve segments: the probes
encapsulated to the member's tunnel endpoint, and the answers taken out of
the tunnel, checked against scapy's own VXLAN and Geneve layers (every
checksum included); the socket filter with tunnel ports. No root needed."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP, TCP, UDP, in4_chksum
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, in6_chksum
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from tests.agent.test_frames import _run_cbpf, check_jumps
from tests.agent.test_probes import HS4, HS6, M4, M6, MAC, MACB, MEMBER_MAC, MEMBERB, _recomputed
from xdsr.agent import probes
from xdsr.net.frames import mac_bytes

HOP_MAC = "02:1b:0e:00:00:01"  # the underlay's next hop towards the member's endpoint
ROUTER_MAC = "02:1b:0e:00:00:02"  # what the answers come from
NODE4, VTEP4 = ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("198.51.100.7")
NODE6, VTEP6 = ipaddress.IPv6Address("2001:db8::1"), ipaddress.IPv6Address("2001:db8:7::7")
PORTS = {probes.VXLAN_PORT: "vxlan", probes.GENEVE_PORT: "geneve"}
KINDS = pytest.mark.parametrize("kind", ["vxlan", "geneve"])
UNDERLAYS = pytest.mark.parametrize(("node", "vtep"), [(NODE4, VTEP4), (NODE6, VTEP6)], ids=["outer-v4", "outer-v6"])
INNER = pytest.mark.parametrize(("hs", "member"), [(HS4, M4), (HS6, M6)], ids=["inner-v4", "inner-v6"])


def _tunnel(kind: str, node: probes.IPAddress, vtep: probes.IPAddress, vid: int = 0) -> probes.Tunnel:
    port = probes.VXLAN_PORT if kind == "vxlan" else probes.GENEVE_PORT
    return probes.Tunnel(kind, 5001, node, vtep, MACB, mac_bytes(HOP_MAC), port, 51234, vid)


def _overlay(kind: str, vni: int = 5001) -> Packet:
    return VXLAN(flags=0x08, vni=vni) if kind == "vxlan" else GENEVE(vni=vni, proto=0x6558)


def _outer_ip(src: probes.IPAddress, dst: probes.IPAddress) -> Packet:
    return IP(src=str(src), dst=str(dst)) if src.version == 4 else IPv6(src=str(src), dst=str(dst))


# -- building ----------------------------------------------------------------


@KINDS
@UNDERLAYS
@INNER
def test_a_check_goes_encapsulated_to_the_members_endpoint(
    kind: str, node: probes.IPAddress, vtep: probes.IPAddress, hs: probes.IPAddress, member: probes.IPAddress
) -> None:
    inner = probes.tcp_syn(MACB, MEMBERB, 0, hs, member, 40000, 80, 0x12345678)
    raw = probes.encapsulate(_tunnel(kind, node, vtep), inner)
    p = Ether(raw)
    assert (p.src, p.dst) == (MAC, HOP_MAC) and Dot1Q not in p
    if node.version == 4:
        ip = p[IP]
        assert (ip.src, ip.dst, ip.proto, ip.ttl, int(ip.flags)) == (str(node), str(vtep), 17, 64, 2)
    else:
        ip6 = p[IPv6]
        assert (ip6.src, ip6.dst, ip6.nh, ip6.hlim) == (str(node), str(vtep), 17, 64)
    udp = p[UDP]
    port = probes.VXLAN_PORT if kind == "vxlan" else probes.GENEVE_PORT
    assert (udp.sport, udp.dport, udp.len) == (51234, port, len(raw) - (34 if node.version == 4 else 54))
    assert udp.chksum != 0  # filled in on both families (required over IPv6)
    if kind == "vxlan":
        assert (p[VXLAN].flags, p[VXLAN].vni) == (0x08, 5001)
        carried = p[VXLAN].payload
    else:
        g = p[GENEVE]
        assert (g.version, g.optionlen, g.oam, g.critical, g.proto, g.vni) == (0, 0, 0, 0, 0x6558, 5001)
        carried = g.payload
    assert bytes(carried) == inner  # the inner frame as sent on a VLAN, untouched
    assert carried[TCP].flags == "S" and (carried[TCP].sport, carried[TCP].dport) == (40000, 80)
    # Every checksum is the one scapy computes: the inner frame's, the outer
    # IPv4 header's, and the outer UDP one over the datagram as sent (scapy's
    # own rebuild would leave the inner frame's Ethernet padding out of it).
    assert _recomputed(inner) == inner
    at = 14 + (20 if node.version == 4 else 40)
    zeroed = raw[at : at + 6] + b"\0\0" + raw[at + 8 :]
    if node.version == 4:
        assert udp.chksum == in4_chksum(17, p[IP], zeroed)
        assert _recomputed(raw[:at]) == raw[:at]
    else:
        assert udp.chksum == in6_chksum(17, p[IPv6], zeroed)


def test_the_underlay_may_be_tagged_and_the_ports_are_the_attachments() -> None:
    inner = probes.echo_request(MACB, MEMBERB, 0, HS4, M4, 0x4242, 7)
    t = probes.Tunnel("vxlan", 16777215, NODE4, VTEP4, MACB, mac_bytes(HOP_MAC), 8472, 50000, vid=300)
    p = Ether(probes.encapsulate(t, inner))
    assert p[Dot1Q].vlan == 300 and p[UDP].dport == 8472
    assert VXLAN(bytes(p[UDP].payload)).vni == 16777215
    with pytest.raises(ValueError, match="not a tunnel type"):
        probes.encapsulate(probes.Tunnel("gre", 1, NODE4, VTEP4, MACB, MACB, 1, 1), inner)
    with pytest.raises(ValueError, match="same address family"):
        probes.encapsulate(probes.Tunnel("vxlan", 1, NODE4, VTEP6, MACB, MACB, 4789, 1), inner)


def test_the_source_port_is_stable_per_flow_and_in_the_dynamic_range() -> None:
    a = probes.tunnel_sport(M4, 80, 40000)
    assert a == probes.tunnel_sport(M4, 80, 40000)
    ports = {probes.tunnel_sport(M4, 80, p) for p in range(40000, 40200)}
    assert all(49152 <= p <= 65535 for p in ports) and len(ports) > 150  # spread for the underlay's ECMP


# -- parsing -----------------------------------------------------------------


def _answer(kind: str, inner: Packet, vni: int = 5001, src: probes.IPAddress = VTEP4, dst: probes.IPAddress = NODE4,
            port: int | None = None, tag: int | None = None) -> bytes:  # fmt: skip
    port = port or (probes.VXLAN_PORT if kind == "vxlan" else probes.GENEVE_PORT)
    l2 = Ether(src=ROUTER_MAC, dst=MAC)
    if tag is not None:
        l2 = l2 / Dot1Q(vlan=tag)
    return bytes(l2 / _outer_ip(src, dst) / UDP(sport=55555, dport=port) / _overlay(kind, vni) / inner)


def _syn_ack(hs: probes.IPAddress, member: probes.IPAddress) -> Packet:
    ip = IP(src=str(member), dst=str(hs)) if hs.version == 4 else IPv6(src=str(member), dst=str(hs))
    return Ether(src=MEMBER_MAC, dst=MAC) / ip / TCP(sport=80, dport=40000, flags="SA", seq=1000, ack=0x12345679)


@KINDS
@UNDERLAYS
@INNER
def test_answers_are_taken_out_of_the_tunnel(
    kind: str, node: probes.IPAddress, vtep: probes.IPAddress, hs: probes.IPAddress, member: probes.IPAddress
) -> None:
    raw = _answer(kind, _syn_ack(hs, member), src=vtep, dst=node)
    a = probes.parse(raw, vid=0, tunnels=PORTS)
    port = probes.VXLAN_PORT if kind == "vxlan" else probes.GENEVE_PORT
    inner = probes.TcpSegment(0, MEMBER_MAC, member, hs, 80, 40000, 1000, 0x12345679, 0x12)
    assert a == probes.Encapsulated(kind, 5001, 0, ROUTER_MAC, vtep, node, port, inner)
    # Without tunnel ports a datagram is not an answer.
    assert probes.parse(raw, vid=0) is None


def test_a_members_arp_for_the_health_source_comes_through_the_tunnel() -> None:
    arp = Ether(src=MEMBER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MEMBER_MAC, psrc=str(M4), pdst=str(HS4))
    a = probes.parse(_answer("vxlan", arp, vni=77, tag=12), vid=0, tunnels=PORTS)
    assert isinstance(a, probes.Encapsulated) and (a.vni, a.vid, a.outer_src_mac) == (77, 12, ROUTER_MAC)
    assert a.inner == probes.NeighborQuestion(0, MEMBER_MAC, M4, HS4, MEMBER_MAC)


def test_geneve_options_of_any_length_are_skipped() -> None:
    for n in (1, 3, 15):  # option data in 4-byte words: up to the 124 bytes optionlen allows
        opts = [GeneveOptions(classid=0x0102, type=0x80, data=b"\xab" * 4 * n)]
        g = GENEVE(vni=9, proto=0x6558, options=opts)
        raw = bytes(Ether(dst=MAC) / IP(src=str(VTEP4), dst=str(NODE4)) / UDP(dport=6081) / g / _syn_ack(HS4, M4))
        a = probes.parse(raw, tunnels=PORTS)
        assert isinstance(a, probes.Encapsulated) and a.vni == 9 and isinstance(a.inner, probes.TcpSegment), n


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_answer("vxlan", _syn_ack(HS4, M4), port=4790), id="another-port"),
        pytest.param(
            bytes(Ether(dst=MAC) / IP(src=str(VTEP4), dst=str(NODE4)) / UDP(dport=4789) / VXLAN(flags=0, vni=5)
                  / _syn_ack(HS4, M4)),
            id="vxlan-without-I-flag",
        ),
        pytest.param(
            bytes(Ether(dst=MAC) / IP(src=str(VTEP4), dst=str(NODE4)) / UDP(dport=6081) / GENEVE(version=1, vni=5)
                  / _syn_ack(HS4, M4)),
            id="geneve-version-1",
        ),
        pytest.param(
            bytes(Ether(dst=MAC) / IP(src=str(VTEP4), dst=str(NODE4)) / UDP(dport=6081) / GENEVE(oam=1, vni=5)
                  / _syn_ack(HS4, M4)),
            id="geneve-oam",
        ),
        pytest.param(
            bytes(Ether(dst=MAC) / IP(src=str(VTEP4), dst=str(NODE4)) / UDP(dport=6081) / GENEVE(proto=0x0800, vni=5)
                  / IP(src=str(M4), dst=str(HS4)) / TCP(flags="SA")),
            id="geneve-carrying-ip",
        ),
        pytest.param(
            _answer("vxlan", Ether(_answer("vxlan", _syn_ack(HS4, M4)))),
            id="tunnel-in-a-tunnel",
        ),
        pytest.param(
            _answer("vxlan", Ether(src=MEMBER_MAC, dst=MAC) / IP(src=str(M4), dst=str(HS4)) / ICMP(type=0, chksum=1)),
            id="inner-bad-checksum",
        ),
        pytest.param(
            _answer("geneve", Ether(src=MEMBER_MAC, dst=MAC) / IPv6(src=str(M6), dst=str(HS6)) / ICMPv6EchoRequest()),
            id="inner-not-an-answer",
        ),
    ],
)  # fmt: skip
def test_rejects_what_is_no_answer_through_a_tunnel(raw: bytes) -> None:
    assert probes.parse(raw, tunnels=PORTS) is None


def test_truncated_tunnels_are_rejected_and_parse_never_raises() -> None:
    for kind in ("vxlan", "geneve"):
        raw = _answer(kind, _syn_ack(HS6, M6), src=VTEP6, dst=NODE6)
        assert probes.parse(raw, tunnels=PORTS) is not None
        for n in range(len(raw)):
            assert probes.parse(raw[:n], tunnels=PORTS) is None, (kind, n)
        # A UDP length that claims more than there is, or less than a header.
        for length in (len(raw), 7, 0):
            bad = bytearray(raw)
            bad[14 + 40 + 4 : 14 + 40 + 6] = length.to_bytes(2, "big")
            assert probes.parse(bytes(bad), tunnels=PORTS, verify_checksum=False) is None, (kind, length)


# -- the socket filter -------------------------------------------------------


def test_socket_filter_takes_datagrams_to_the_tunnel_ports_only() -> None:
    prog = probes.health_filter((probes.VXLAN_PORT, probes.GENEVE_PORT))
    check_jumps(prog)
    accepted = {
        "vxlan-v4": _answer("vxlan", _syn_ack(HS4, M4)),
        "geneve-v6": _answer("geneve", _syn_ack(HS4, M4), src=VTEP6, dst=NODE6),
        "tagged-vxlan-v6": _answer("vxlan", _syn_ack(HS6, M6), src=VTEP6, dst=NODE6, tag=5),
        "tcp": bytes(_syn_ack(HS4, M4)),
    }
    rejected = {
        "other-udp-v4": _answer("vxlan", _syn_ack(HS4, M4), port=4790),
        "other-udp-v6": _answer("geneve", _syn_ack(HS4, M4), src=VTEP6, dst=NODE6, port=53),
        "dns": probes.udp_datagram(MEMBERB, MACB, 0, M4, HS4, 53, 40001),
    }
    assert {k: _run_cbpf(prog, p) > 0 for k, p in accepted.items()} == dict.fromkeys(accepted, True)
    assert {k: _run_cbpf(prog, p) > 0 for k, p in rejected.items()} == dict.fromkeys(rejected, False)
    # Without tunnel ports, no datagram at all (as before overlays).
    plain = probes.health_filter()
    assert _run_cbpf(plain, accepted["vxlan-v4"]) == 0 and _run_cbpf(plain, accepted["tcp"]) > 0
