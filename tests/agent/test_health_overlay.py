"""The health checker and a member behind a VXLAN or Geneve tunnel, frame
by frame: what the checker sends is read with scapy's VXLAN and GENEVE
layers, and a member's answers (and its ARP for the health source) are
built with them, encapsulated by its host's endpoint. No root needed: the
trunk socket is a recorder."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet

from xdsr.agent import probes
from xdsr.agent.health import HealthChecker, Overlay, Target
from xdsr.dataplane.model import TunnelEndpoint

MAC = "02:1b:00:00:00:01"  # the LB node's trunk
HOP_MAC = "02:1b:0e:00:00:01"  # the underlay next hop towards the member's endpoint
ROUTER_MAC = "02:1b:0e:00:00:02"  # what the member's host's frames come from
MEMBER_MAC = "02:1b:02:00:00:07"
NODE, VTEP = ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("198.51.100.7")
HS, MEMBER = ipaddress.IPv4Address("10.9.0.250"), ipaddress.IPv4Address("10.9.0.11")
VNI = 5001


class Recorder:
    """The trunk socket: what the checker sends, each frame handed to `on_send`."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.on_send: Callable[[bytes], None] = lambda _: None

    def send(self, frame: bytes) -> int:
        self.sent.append(frame)
        self.on_send(frame)
        return len(frame)


def _layer(kind: str) -> type[Packet]:
    return VXLAN if kind == "vxlan" else GENEVE


def _checker(kind: str = "vxlan") -> tuple[HealthChecker, Recorder]:
    sock = Recorder()
    endpoint = TunnelEndpoint(vtep4=NODE)
    checker = HealthChecker(sock, MAC, {(kind, VNI): [HS]}, endpoint=endpoint)  # type: ignore[arg-type]
    return checker, sock


def _target(kind: str = "vxlan", check: str = "tcp") -> Target:
    port = 0 if check == "ping" else 80
    return Target(check, 0, MEMBER_MAC, MEMBER, port, 1.0, 0.3, 1, 1, Overlay(kind, VNI, VTEP, HOP_MAC))


def _from_member(kind: str, inner: Packet, vni: int = VNI, dst: ipaddress.IPv4Address = NODE) -> bytes:
    port = probes.VXLAN_PORT if kind == "vxlan" else probes.GENEVE_PORT
    overlay = VXLAN(flags=0x08, vni=vni) if kind == "vxlan" else GENEVE(vni=vni, proto=0x6558)
    outer = Ether(src=ROUTER_MAC, dst=MAC) / IP(src=str(VTEP), dst=str(dst)) / UDP(sport=50001, dport=port)
    return bytes(outer / overlay / inner)


def _opened(kind: str, frame: bytes) -> Packet:
    """The frame the checker sent, checked to go to the member's endpoint; its inner frame."""
    p = Ether(frame)
    port = probes.VXLAN_PORT if kind == "vxlan" else probes.GENEVE_PORT
    assert (p.src, p.dst) == (MAC, HOP_MAC)
    assert (p[IP].src, p[IP].dst, p[UDP].dport) == (str(NODE), str(VTEP), port)
    assert p[_layer(kind)].vni == VNI
    inner = p[_layer(kind)].payload
    assert (inner.src, inner.dst) == (MAC, MEMBER_MAC)
    return inner  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_a_tcp_check_through_the_tunnel(kind: str) -> None:
    checker, sock = _checker(kind)

    def member(frame: bytes) -> None:
        inner = _opened(kind, frame)
        syn = inner[TCP]
        if syn.flags != "S":
            return
        assert (inner[IP].src, inner[IP].dst, syn.dport) == (str(HS), str(MEMBER), 80)
        answer = Ether(src=MEMBER_MAC, dst=MAC) / IP(src=str(MEMBER), dst=str(HS))
        answer = answer / TCP(sport=80, dport=syn.sport, flags="SA", seq=7, ack=syn.seq + 1)
        asyncio.get_running_loop().call_soon(checker.received, _from_member(kind, answer))

    sock.on_send = member
    ok, why = asyncio.run(checker._check(_target(kind)))
    assert (ok, why) == (True, "SYN-ACK")
    syn, rst = (_opened(kind, f)[TCP] for f in sock.sent)
    assert rst.flags == "R" and rst.seq == syn.seq + 1  # no half-open connection left on the member
    # Both frames of the check share the tunnel's source port (one flow for the underlay's ECMP).
    assert Ether(sock.sent[0])[UDP].sport == Ether(sock.sent[1])[UDP].sport


def test_answers_from_elsewhere_are_not_the_members() -> None:
    """The same answer on another VNI, or to an address that is not the
    node's endpoint, does not count: the check fails."""
    for vni, dst in ((VNI + 1, NODE), (VNI, ipaddress.IPv4Address("192.0.2.99"))):
        checker, sock = _checker()

        def member(frame: bytes, vni: int = vni, dst: ipaddress.IPv4Address = dst, c: HealthChecker = checker) -> None:
            syn = Ether(frame)[VXLAN].payload[TCP]
            answer = Ether(src=MEMBER_MAC, dst=MAC) / IP(src=str(MEMBER), dst=str(HS))
            answer = answer / TCP(sport=80, dport=syn.sport, flags="SA", seq=7, ack=syn.seq + 1)
            asyncio.get_running_loop().call_soon(c.received, _from_member("vxlan", answer, vni, dst))

        sock.on_send = member
        assert asyncio.run(checker._check(_target())) == (False, "no answer to SYN"), (vni, dst)


def test_a_ping_check_through_the_tunnel() -> None:
    checker, sock = _checker()

    def member(frame: bytes) -> None:
        echo = _opened("vxlan", frame)[ICMP]
        reply = (
            Ether(src=MEMBER_MAC, dst=MAC) / IP(src=str(MEMBER), dst=str(HS)) / ICMP(type=0, id=echo.id, seq=echo.seq)
        )
        asyncio.get_running_loop().call_soon(checker.received, _from_member("vxlan", reply / bytes(echo.payload)))

    sock.on_send = member
    assert asyncio.run(checker._check(_target(check="ping"))) == (True, "echo reply")


@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_the_members_arp_is_answered_back_through_its_tunnel(kind: str) -> None:
    checker, sock = _checker(kind)
    ask = Ether(src=MEMBER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MEMBER_MAC, psrc=str(MEMBER), pdst=str(HS))
    checker.received(_from_member(kind, ask))
    (frame,) = sock.sent
    p = Ether(frame)
    # Back to the endpoint it came from, at the MAC it came from, on its VNI and port.
    assert (p.dst, p[IP].src, p[IP].dst) == (ROUTER_MAC, str(NODE), str(VTEP))
    assert p[UDP].dport == (probes.VXLAN_PORT if kind == "vxlan" else probes.GENEVE_PORT)
    assert p[_layer(kind)].vni == VNI
    arp = p[_layer(kind)].payload[ARP]
    assert (arp.op, arp.psrc, arp.hwsrc, arp.pdst, arp.hwdst) == (2, str(HS), MAC, str(MEMBER), MEMBER_MAC)
    assert checker.neighbor_answers == 1
    # Not for a health source on that VNI: no answer.
    checker.received(_from_member(kind, ask, vni=VNI + 1))
    assert len(sock.sent) == 1


def test_what_the_node_cannot_check_through_a_tunnel() -> None:
    checker, _ = _checker()
    t = _target()
    assert checker.can_check(t.segment, 4, t.overlay)
    assert not checker.can_check(("vxlan", VNI + 1), 4, t.overlay)  # no health source on that VNI
    v6 = Overlay("vxlan", VNI, ipaddress.IPv6Address("2001:db8::7"), HOP_MAC)
    assert not checker.can_check(t.segment, 4, v6)  # the node has no IPv6 endpoint
    geneve = HealthChecker(Recorder(), MAC, {("geneve", VNI): [HS]}, endpoint=TunnelEndpoint(vtep4=NODE, geneve_port=0))  # type: ignore[arg-type]
    assert not geneve.can_check(("geneve", VNI), 4, Overlay("geneve", VNI, VTEP, HOP_MAC))  # Geneve is off
    plain = HealthChecker(Recorder(), MAC, {("vxlan", VNI): [HS]})  # type: ignore[arg-type]
    assert not plain.can_check(t.segment, 4, t.overlay) and plain.tunnel_ports == {}


def test_health_sources_on_vlans_and_overlays() -> None:
    from xdsr.agent.server import StartupError, parse_health_sources

    got = parse_health_sources(("100=10.1.0.250", "vxlan:5001=10.9.0.250", "geneve:7=fd00:7::fa", "vxlan:5001=fd00::1"))
    assert got == {
        100: [ipaddress.ip_address("10.1.0.250")],
        ("vxlan", 5001): [ipaddress.ip_address("10.9.0.250"), ipaddress.ip_address("fd00::1")],
        ("geneve", 7): [ipaddress.ip_address("fd00:7::fa")],
    }
    for bad, words in (
        ("vxlan:0=10.0.0.1", "VNI 0 is outside"),
        ("vlan:5000=10.0.0.1", "VLAN id 5000"),
        ("gre:5=10.0.0.1", "expected VLAN=ADDRESS"),
        ("vxlan:5001=224.0.0.1", "not a unicast address"),
    ):
        with pytest.raises(StartupError, match=words):
            parse_health_sources((bad,))
    with pytest.raises(StartupError, match="vxlan 5 already has an IPv4 source"):
        parse_health_sources(("vxlan:5=10.0.0.1", "vxlan:5=10.0.0.2"))
