"""The XDP program, packet by packet, through BPF_PROG_TEST_RUN.

Each case is data: an input frame built with scapy, the verdict the program
must return, the reason it must count, and for forwarded frames the exact
output frame. The expected backend of multi-backend services comes from the
Python side (the Maglev builder and the flow-hash mirror), so these cases
also prove that the kernel and Python agree on tables and hashing.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from tests.conftest import needs_root, private_pin_dir
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.abi import Reason
from xdsr.dataplane.config import parse_config
from xdsr.dataplane.flowhash import flow_hash, slot_of
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.model import Backend, Service
from xdsr.dataplane.state import apply, read_stats
from xdsr.dataplane.tables import maglev_slots

pytestmark = needs_root

LBN = "02:00:00:00:00:aa"
ROUTER = "02:00:00:00:00:01"
CLIENT4, CLIENT6 = "198.51.100.7", "2001:db8:ffff::7"
B1, B2, B3, B4 = "02:00:00:00:01:01", "02:00:00:00:02:02", "02:00:00:00:03:03", "02:00:00:00:04:04"

MANY = [{"mac": f"02:00:00:00:10:{i:02x}", "vlan": 100 + i % 3, "weight": 1 + i % 2} for i in range(8)]
OTHER = [{"mac": f"02:00:00:00:20:{i:02x}", "vlan": 300} for i in range(5)]

CONFIG = {
    "services": [
        {
            "vip": "203.0.113.10",
            "port": 80,
            "protocol": "tcp",
            "segment": {"id": 10},
            "backends": [{"mac": B1, "vlan": 100}],
        },
        {
            "vip": "203.0.113.10",
            "port": 53,
            "protocol": "udp",
            "segment": {"id": 10},
            "backends": [{"mac": B2, "vlan": 0}],
        },
        {"vip": "203.0.113.20", "port": 80, "protocol": "tcp", "backends": [{"mac": B3, "vlan": 100}]},
        {"vip": "203.0.113.20", "port": 53, "protocol": "udp", "backends": [{"mac": B4, "vlan": 0}]},
        {
            "vip": "2001:db8::10",
            "port": 443,
            "protocol": "tcp",
            "segment": {"id": 10},
            "backends": [{"mac": B1, "vlan": 100}],
        },
        {"vip": "2001:db8::10", "port": 443, "protocol": "udp", "backends": [{"mac": B3, "vlan": 200}]},
        {
            "vip": "2001:db8::10",
            "port": 80,
            "protocol": "tcp",
            "segment": {"id": 10},
            "backends": [{"mac": B2, "vlan": 0}],
        },
        # Several ports on one VIP: fragments follow the lowest port (5000).
        {"vip": "203.0.113.30", "port": 5000, "protocol": "udp", "segment": {"id": 10}, "backends": MANY},
        {"vip": "203.0.113.30", "port": 6000, "protocol": "udp", "segment": {"id": 10}, "backends": OTHER},
        {"vip": "2001:db8::30", "port": 5000, "protocol": "udp", "segment": {"id": 10}, "backends": MANY},
        {
            "vip": "203.0.113.30",
            "port": 7000,
            "protocol": "tcp",
            "segment": {"id": 10},
            "backends": MANY,
            "table_size": 251,
        },
        {"vip": "203.0.113.40", "port": 80, "protocol": "tcp", "segment": {"id": 10}, "backends": []},
        {
            "vip": "203.0.113.41",
            "port": 80,
            "protocol": "tcp",
            "segment": {"id": 10},
            "backends": [{"mac": B1, "vlan": 1, "weight": 0}],
        },
    ]
}
SERVICES = parse_config(CONFIG).to_services()


def _service(vip: str, port: int, proto: int, seg: int) -> Service:
    for s in SERVICES:
        k = s.key
        if str(k.vip) == vip and k.port == port and k.proto == proto and k.seg_id == seg:
            return s
    raise KeyError((vip, port, proto, seg))


def expected_backend(
    svc: Service, src: str, dst: str, proto: int, sport: int, dport: int, vid: int, frag: bool
) -> Backend:
    table = maglev_slots(svc.table_size, svc.backends)
    h = flow_hash(src, dst, proto, sport, dport, vid, fragment=frag)
    return svc.backends[int(table[slot_of(h, svc.table_size)])]


def eth(vid: int | None, prio: int = 0, dst: str = LBN) -> Packet:
    e = Ether(dst=dst, src=ROUTER)
    return e / Dot1Q(vlan=vid, prio=prio) if vid is not None else e


def rewritten(frame: Packet, be: Backend, in_vid: int | None, prio: int = 0) -> bytes:
    """The frame as the program must send it to backend be."""
    inner = frame[Dot1Q].payload if in_vid is not None else frame[Ether].payload
    out = Ether(dst=be.mac, src=LBN, type=frame[Ether].type if in_vid is None else frame[Dot1Q].type)
    if be.vlan:
        out = Ether(dst=be.mac, src=LBN) / Dot1Q(vlan=be.vlan, prio=prio)
    return bytes(out / inner.copy())


@dataclass
class Case:
    name: str
    frame: bytes
    verdict: int
    reason: Reason
    expect: bytes | None = None  # exact output for XDP_TX; PASS must leave the frame as it was


def _cases() -> Iterator[Case]:
    tcp = socket.IPPROTO_TCP
    udp = socket.IPPROTO_UDP

    f = eth(10, prio=5) / IP(src=CLIENT4, dst="203.0.113.10") / TCP(sport=40000, dport=80, flags="S") / Raw(b"x" * 20)
    yield Case(
        "v4 tcp tagged in, tagged out: VID rewritten, PCP kept",
        bytes(f),
        bpf.XDP_TX,
        Reason.FORWARDED,
        rewritten(f, Backend(B1, 100), 10, prio=5),
    )
    f = eth(10) / IP(src=CLIENT4, dst="203.0.113.10") / UDP(sport=40000, dport=53) / Raw(b"q" * 30)
    yield Case(
        "v4 udp tagged in, untagged out: tag popped",
        bytes(f),
        bpf.XDP_TX,
        Reason.FORWARDED,
        rewritten(f, Backend(B2, 0), 10),
    )
    f = eth(None) / IP(src=CLIENT4, dst="203.0.113.20") / TCP(sport=40001, dport=80) / Raw(b"y" * 8)
    yield Case(
        "v4 tcp untagged in, tagged out: tag pushed",
        bytes(f),
        bpf.XDP_TX,
        Reason.FORWARDED,
        rewritten(f, Backend(B3, 100), None),
    )
    f = eth(None) / IP(src=CLIENT4, dst="203.0.113.20") / UDP(sport=40001, dport=53) / Raw(b"z")
    yield Case(
        "v4 udp untagged in, untagged out: MACs only",
        bytes(f),
        bpf.XDP_TX,
        Reason.FORWARDED,
        rewritten(f, Backend(B4, 0), None),
    )
    f = eth(10, prio=3) / IPv6(src=CLIENT6, dst="2001:db8::10") / TCP(sport=40002, dport=443) / Raw(b"6" * 16)
    yield Case(
        "v6 tcp tagged in, tagged out",
        bytes(f),
        bpf.XDP_TX,
        Reason.FORWARDED,
        rewritten(f, Backend(B1, 100), 10, prio=3),
    )
    f = eth(None) / IPv6(src=CLIENT6, dst="2001:db8::10") / UDP(sport=40002, dport=443) / Raw(b"6" * 16)
    yield Case(
        "v6 udp untagged in, tagged out", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, Backend(B3, 200), None)
    )
    f = eth(10) / IPv6(src=CLIENT6, dst="2001:db8::10") / TCP(sport=40003, dport=80) / Raw(b"6")
    yield Case(
        "v6 tcp tagged in, untagged out", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, Backend(B2, 0), 10)
    )
    f = (
        eth(10)
        / IP(src=CLIENT4, dst="203.0.113.10", options=[IPOption_RR(routers=["1.2.3.4", "5.6.7.8"])])
        / TCP(sport=40004, dport=80)
        / Raw(b"o" * 5)
    )
    yield Case("v4 with IP options", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, Backend(B1, 100), 10))
    f = (
        eth(10)
        / IPv6(src=CLIENT6, dst="2001:db8::10")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=40005, dport=443)
    )
    yield Case(
        "v6 through hop-by-hop and destination options",
        bytes(f),
        bpf.XDP_TX,
        Reason.FORWARDED,
        rewritten(f, Backend(B1, 100), 10),
    )
    f = eth(10) / IPv6(src=CLIENT6, dst="2001:db8::10") / IPv6ExtHdrRouting(addresses=[]) / TCP(sport=40006, dport=443)
    yield Case(
        "v6 through a routing header", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, Backend(B1, 100), 10)
    )

    # Multi-backend services: the backend is whatever Python computes.
    rng = random.Random(7)
    svc = _service("203.0.113.30", 5000, udp, 10)
    for i in range(24):
        src = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        sport = rng.randrange(1024, 65536)
        f = eth(10) / IP(src=src, dst="203.0.113.30") / UDP(sport=sport, dport=5000) / Raw(b"m" * 10)
        be = expected_backend(svc, src, "203.0.113.30", udp, sport, 5000, 10, False)
        yield Case(f"v4 flow {i} onto a Maglev slot", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, be, 10))
    svc = _service("203.0.113.30", 7000, tcp, 10)
    for i in range(8):
        sport = rng.randrange(1024, 65536)
        f = eth(10) / IP(src=CLIENT4, dst="203.0.113.30") / TCP(sport=sport, dport=7000)
        be = expected_backend(svc, CLIENT4, "203.0.113.30", tcp, sport, 7000, 10, False)
        yield Case(
            f"v4 tcp flow {i}, explicit table size 251", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, be, 10)
        )
    svc6 = _service("2001:db8::30", 5000, udp, 10)
    for i in range(12):
        src = f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
        sport = rng.randrange(1024, 65536)
        f = eth(10) / IPv6(src=src, dst="2001:db8::30") / UDP(sport=sport, dport=5000)
        be = expected_backend(svc6, src, "2001:db8::30", udp, sport, 5000, 10, False)
        yield Case(f"v6 flow {i} onto a Maglev slot", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, be, 10))

    # Fragments: every piece of a datagram, the first included, hashes on
    # addresses and protocol and uses the table of the lowest port (5000),
    # even when the first fragment shows port 6000.
    svc = _service("203.0.113.30", 5000, udp, 10)
    for dport in (5000, 6000):
        whole = IP(src=CLIENT4, dst="203.0.113.30", id=4242) / UDP(sport=33333, dport=dport) / Raw(b"F" * 64)
        frags = [eth(10) / p for p in whole.fragment(fragsize=24)]
        assert len(frags) >= 3
        be = expected_backend(svc, CLIENT4, "203.0.113.30", udp, 0, 0, 10, True)
        for i, fr in enumerate(frags):
            yield Case(
                f"v4 fragment {i} of a datagram to port {dport}",
                bytes(fr),
                bpf.XDP_TX,
                Reason.FORWARDED,
                rewritten(fr, be, 10),
            )
    whole6 = (
        IPv6(src=CLIENT6, dst="2001:db8::30") / IPv6ExtHdrFragment(id=99) / UDP(sport=3, dport=5000) / Raw(b"G" * 100)
    )
    be = expected_backend(svc6, CLIENT6, "2001:db8::30", udp, 0, 0, 10, True)
    for i, fr in enumerate(fragment6(whole6, 80)):
        f = eth(10) / fr
        yield Case(f"v6 fragment {i}", bytes(f), bpf.XDP_TX, Reason.FORWARDED, rewritten(f, be, 10))

    # Not ours: passed to the host untouched.
    f = eth(10) / IP(src=CLIENT4, dst="203.0.113.10") / TCP(sport=1, dport=81)
    yield Case("v4 right VIP, wrong port", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(11) / IP(src=CLIENT4, dst="203.0.113.10") / TCP(sport=1, dport=80)
    yield Case("v4 right VIP and port, other VLAN", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(None) / IP(src=CLIENT4, dst="203.0.113.10") / TCP(sport=1, dport=80)
    yield Case("v4 right VIP and port, untagged", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / IP(src=CLIENT4, dst="203.0.113.10") / UDP(sport=1, dport=80)
    yield Case("v4 right VIP and port, other protocol", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / IP(src=CLIENT4, dst="203.0.113.10") / ICMP()
    yield Case("v4 ICMP to a VIP", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(None) / IP(src=CLIENT4, dst="10.0.0.1") / TCP(sport=22, dport=22)
    yield Case("host traffic (SSH)", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = Ether(dst="ff:ff:ff:ff:ff:ff", src=ROUTER) / ARP(pdst="10.0.0.1")
    yield Case("ARP broadcast", bytes(f), bpf.XDP_PASS, Reason.NOT_FOR_US)
    f = eth(None) / ARP(op=2, pdst="10.0.0.1")
    yield Case("ARP to us", bytes(f), bpf.XDP_PASS, Reason.NOT_IP)
    f = eth(10, dst="02:00:00:00:00:bb") / IP(src=CLIENT4, dst="203.0.113.10") / TCP(sport=1, dport=80)
    yield Case("VIP traffic flooded to us for another MAC", bytes(f), bpf.XDP_PASS, Reason.NOT_FOR_US)

    # Services that cannot forward.
    f = eth(10) / IP(src=CLIENT4, dst="203.0.113.40") / TCP(sport=1, dport=80)
    yield Case("service without backends", bytes(f), bpf.XDP_DROP, Reason.NO_BACKEND)
    f = eth(10) / IP(src=CLIENT4, dst="203.0.113.41") / TCP(sport=1, dport=80)
    yield Case("service whose only backend has weight 0", bytes(f), bpf.XDP_DROP, Reason.NO_BACKEND)

    # Malformed and truncated: never forwarded.
    good = bytes(eth(10) / IP(src=CLIENT4, dst="203.0.113.10") / TCP(sport=2, dport=80))
    yield Case("802.1Q tag cut short", good[:16], bpf.XDP_DROP, Reason.MALFORMED)
    yield Case("IPv4 header cut short", good[: 18 + 12], bpf.XDP_DROP, Reason.MALFORMED)
    yield Case("TCP header cut short", good[: 18 + 20 + 10], bpf.XDP_DROP, Reason.MALFORMED)
    bad = IP(bytes(IP(src=CLIENT4, dst="203.0.113.10") / TCP(sport=2, dport=80)))
    bad.len = 200
    yield Case("IPv4 total length past the frame", bytes(eth(10) / bad), bpf.XDP_DROP, Reason.MALFORMED)
    raw = bytearray(good)
    raw[18] = 0x44  # IHL 4 < 5
    yield Case("IPv4 IHL below 5", bytes(raw), bpf.XDP_DROP, Reason.MALFORMED)
    raw = bytearray(good)
    raw[18] = 0x65  # version 6 under an IPv4 EtherType
    yield Case("IP version does not match EtherType", bytes(raw), bpf.XDP_DROP, Reason.MALFORMED)
    raw = bytearray(good)
    raw[18 + 20 + 12] = 0x30  # TCP data offset 3 < 5
    yield Case("TCP data offset below 5", bytes(raw), bpf.XDP_DROP, Reason.MALFORMED)
    g6 = bytes(eth(10) / IPv6(src=CLIENT6, dst="2001:db8::10") / TCP(sport=2, dport=443))
    yield Case("IPv6 header cut short", g6[: 18 + 30], bpf.XDP_DROP, Reason.MALFORMED)
    yield Case("IPv6 TCP header cut short", g6[: 18 + 40 + 8], bpf.XDP_DROP, Reason.MALFORMED)
    f = (
        eth(10)
        / IPv6(src=CLIENT6, dst="2001:db8::10")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=2, dport=443)
    )
    yield Case("IPv6 extension chain too long", bytes(f), bpf.XDP_DROP, Reason.UNSUPPORTED)
    yield Case("runt frame", bytes(eth(None))[:14], bpf.XDP_PASS, Reason.NOT_IP)
    yield from _contract_cases()


def _contract_cases() -> Iterator[Case]:
    """The edge cases of docs/dataplane.md's contract that the program once
    got wrong (issue 11)."""
    tcp, udp = socket.IPPROTO_TCP, socket.IPPROTO_UDP

    # Port 0 is no service's: a TCP or UDP packet to it must not take the
    # fragments' port-0 entry (which 203.0.113.30 and 2001:db8::30 have).
    for name, f in [
        ("v4 udp", eth(10) / IP(src=CLIENT4, dst="203.0.113.30") / UDP(sport=1000, dport=0) / Raw(b"p")),
        ("v4 tcp", eth(10) / IP(src=CLIENT4, dst="203.0.113.30") / TCP(sport=1000, dport=0)),
        ("v6 udp", eth(10) / IPv6(src=CLIENT6, dst="2001:db8::30") / UDP(sport=1000, dport=0) / Raw(b"p")),
    ]:
        yield Case(f"{name} to port 0 of a VIP with fragment entries", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)

    # The address family is part of the key: ::ffff:203.0.113.10 is an IPv6
    # address, not the IPv4 VIP.
    f = eth(10) / IPv6(src=CLIENT6, dst="::ffff:203.0.113.10") / TCP(sport=40000, dport=80)
    yield Case("v6 to the IPv4-mapped form of an IPv4 VIP", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / IPv6(src=CLIENT6, dst="::ffff:203.0.113.30") / IPv6ExtHdrFragment(id=5, m=1) / UDP(dport=5000)
    yield Case("v6 fragment to the IPv4-mapped form of an IPv4 VIP", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)

    # IPv6 fragments whose fragmentable part starts with an extension
    # header: the fragment header's next header is every fragment's
    # protocol, so the whole datagram takes one way (here: no service's).
    for ext_name, ext in [("destination options", IPv6ExtHdrDestOpt()), ("AH", AH(icv=b"\0" * 12))]:
        whole = IPv6(src=CLIENT6, dst="2001:db8::30") / IPv6ExtHdrFragment(id=77) / ext / UDP(sport=9, dport=5000)
        frags = fragment6(whole / Raw(b"H" * 120), 96)
        assert len(frags) >= 2
        for i, fr in enumerate(frags):
            f = eth(10) / fr
            yield Case(
                f"v6 fragment {i}, {ext_name} first in the fragmentable part", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE
            )
    # A later fragment whose payload happens to read like a destination
    # options header followed by UDP is still just payload.
    lookalike = bytes(IPv6ExtHdrDestOpt(nh=udp)) + bytes(UDP(sport=9, dport=5000)) + b"J" * 16
    f = eth(10) / IPv6(src=CLIENT6, dst="2001:db8::30") / IPv6ExtHdrFragment(nh=60, id=78, offset=8) / Raw(lookalike)
    yield Case("v6 later fragment whose payload looks like headers", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)

    # Truncated datagrams: the IP lengths, not the frame's, say what is
    # there; Ethernet pads short frames, and padding is not a header.
    ip = IP(src=CLIENT4, dst="203.0.113.10", len=20) / TCP(sport=3, dport=80)
    yield Case("v4 total length 20, TCP only in the padding", bytes(eth(10) / ip), bpf.XDP_DROP, Reason.MALFORMED)
    ip = IP(src=CLIENT4, dst="203.0.113.10", len=20 + 12) / TCP(sport=3, dport=80)
    yield Case("v4 total length cuts the TCP header", bytes(eth(10) / ip), bpf.XDP_DROP, Reason.MALFORMED)
    opts = TCP(sport=3, dport=80, options=[("NOP", None)] * 8)
    ip = IP(src=CLIENT4, dst="203.0.113.10", len=20 + 20) / opts
    yield Case("v4 total length cuts the TCP options", bytes(eth(10) / ip), bpf.XDP_DROP, Reason.MALFORMED)
    ip = IP(src=CLIENT4, dst="203.0.113.10", len=20 + 6) / UDP(sport=3, dport=53)
    yield Case("v4 total length cuts the UDP header", bytes(eth(10) / ip), bpf.XDP_DROP, Reason.MALFORMED)
    ip = IP(src=CLIENT4, dst="203.0.113.10") / UDP(sport=3, dport=53, len=200) / Raw(b"u" * 10)
    yield Case("UDP length past the IP payload", bytes(eth(10) / ip), bpf.XDP_DROP, Reason.MALFORMED)
    ip = IP(src=CLIENT4, dst="203.0.113.10") / UDP(sport=3, dport=53, len=4) / Raw(b"u" * 10)
    yield Case("UDP length below its header", bytes(eth(10) / ip), bpf.XDP_DROP, Reason.MALFORMED)
    ip6 = IPv6(src=CLIENT6, dst="2001:db8::10", plen=0) / TCP(sport=3, dport=443)
    yield Case("v6 payload length 0 with a TCP header after it", bytes(eth(10) / ip6), bpf.XDP_DROP, Reason.MALFORMED)
    ip6 = IPv6(src=CLIENT6, dst="2001:db8::10", plen=8) / IPv6ExtHdrDestOpt() / TCP(sport=3, dport=443)
    yield Case("v6 payload length ends after an extension header", bytes(eth(10) / ip6), bpf.XDP_DROP, Reason.MALFORMED)
    ip6 = IPv6(src=CLIENT6, dst="2001:db8::10", plen=4) / IPv6ExtHdrDestOpt() / TCP(sport=3, dport=443)
    yield Case("v6 payload length cuts an extension header", bytes(eth(10) / ip6), bpf.XDP_DROP, Reason.MALFORMED)
    ip6 = IPv6(src=CLIENT6, dst="2001:db8::30", plen=4) / IPv6ExtHdrFragment(id=3, m=1) / UDP(dport=5000)
    yield Case("v6 payload length cuts the fragment header", bytes(eth(10) / ip6), bpf.XDP_DROP, Reason.MALFORMED)

    # ICMP "fragmentation needed" / "packet too big" about a VIP's reply go
    # to the backend of the quoted flow, which is the backend the client's
    # packets of that flow reach.
    rng = random.Random(11)
    for vip, port, proto, family in [
        ("203.0.113.30", 5000, udp, 4),
        ("203.0.113.30", 7000, tcp, 4),
        ("2001:db8::30", 5000, udp, 6),
    ]:
        svc = _service(vip, port, proto, 10)
        for i in range(6):
            client = CLIENT4 if family == 4 else CLIENT6
            if i % 2:
                client = (
                    f"198.51.100.{rng.randrange(1, 255)}"
                    if family == 4
                    else f"2001:db8:ffff::{rng.randrange(1, 65535):x}"
                )
            cport = rng.randrange(1024, 65536)
            f = eth(10) / too_big(
                vip, client, proto, port, cport, router="192.0.2.1" if family == 4 else "2001:db8:1::1"
            )
            be = expected_backend(svc, client, vip, proto, cport, port, 10, False)
            yield Case(
                f"{'ICMP' if family == 4 else 'ICMPv6'} too big about {vip}:{port}/{proto} reply {i}",
                bytes(f),
                bpf.XDP_TX,
                Reason.FORWARDED,
                rewritten(f, be, 10),
            )
    f = eth(10) / too_big("203.0.113.10", CLIENT4, tcp, 80, 40000, router="192.0.2.1")
    yield Case(
        "ICMP too big about a single-backend service",
        bytes(f),
        bpf.XDP_TX,
        Reason.FORWARDED,
        rewritten(f, Backend(B1, 100), 10),
    )
    f = eth(10) / too_big("203.0.113.10", CLIENT4, tcp, 80, 40000, router="192.0.2.1", to="203.0.113.20")
    yield Case("ICMP too big sent to another address than the quoted source", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / too_big("203.0.113.10", CLIENT4, tcp, 80, 40000, router="192.0.2.1", code=3)
    yield Case("ICMP port unreachable about a VIP's reply", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / too_big("203.0.113.10", CLIENT4, tcp, 81, 40000, router="192.0.2.1")
    yield Case("ICMP too big about a port without service", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(11) / too_big("203.0.113.10", CLIENT4, tcp, 80, 40000, router="192.0.2.1")
    yield Case("ICMP too big on another VLAN", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / too_big("203.0.113.10", CLIENT4, tcp, 80, 40000, router="192.0.2.1", quote=20 + 4)
    yield Case("ICMP too big quoting less than 8 bytes of TCP", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / too_big("203.0.113.10", CLIENT4, tcp, 80, 40000, router="192.0.2.1", frag_offset=4)
    yield Case("ICMP too big quoting a later fragment", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)
    f = eth(10) / too_big("2001:db8::10", CLIENT6, udp, 443, 40000, router="2001:db8:1::1", quote=40 + 4)
    yield Case("ICMPv6 too big quoting less than 8 bytes of UDP", bytes(f), bpf.XDP_PASS, Reason.NO_SERVICE)


def too_big(
    vip: str,
    client: str,
    proto: int,
    port: int,
    cport: int,
    *,
    router: str,
    to: str | None = None,
    code: int = 4,
    quote: int = 200,
    frag_offset: int = 0,
) -> Packet:
    """A router's ICMP "fragmentation needed" (IPv4) or "packet too big"
    (IPv6) about the reply vip:port -> client:cport, sent to `to` (the VIP)."""
    l4 = TCP(sport=port, dport=cport, flags="A") if proto == socket.IPPROTO_TCP else UDP(sport=port, dport=cport)
    if ":" in vip:
        reply = IPv6(src=vip, dst=client) / l4 / Raw(b"R" * 1400)
        return IPv6(src=router, dst=to or vip) / ICMPv6PacketTooBig(mtu=1280) / Raw(bytes(reply)[:quote])
    reply = IP(src=vip, dst=client, flags="DF", frag=frag_offset) / l4 / Raw(b"R" * 1400)
    return IP(src=router, dst=to or vip) / ICMP(type=3, code=code, nexthopmtu=1400) / Raw(bytes(reply)[:quote])


CASES = list(_cases())


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Dataplane, bpf.Program]]:
    with private_pin_dir() as pin, Dataplane.create_or_open(pin, max_services=64) as dp:
        apply(dp, SERVICES)
        prog = dp.load_program(LBN)
        yield dp, prog
        prog.close()


def run_case(prog: bpf.Program, case: Case) -> None:
    """Run a case's frame through the program: its verdict, every byte of
    a forwarded frame, and a passed frame left as it was."""
    verdict, out, _ = prog.test_run(case.frame)
    assert bpf.XDP_ACTION_NAMES[verdict] == bpf.XDP_ACTION_NAMES[case.verdict]
    if case.verdict == bpf.XDP_TX:
        assert case.expect is not None
        if out != case.expect:
            pytest.fail(f"output differs:\n got  {Ether(out)!r}\n want {Ether(case.expect)!r}")
    elif case.verdict == bpf.XDP_PASS:
        assert out == case.frame


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_packet(loaded: tuple[Dataplane, bpf.Program], case: Case) -> None:
    dp, prog = loaded
    before = read_stats(dp).reasons[case.reason].packets
    run_case(prog, case)
    assert read_stats(dp).reasons[case.reason].packets == before + 1


def test_counters_per_service_and_details(loaded: tuple[Dataplane, bpf.Program]) -> None:
    dp, prog = loaded
    svc = _service("203.0.113.20", 80, socket.IPPROTO_TCP, 0)
    f = bytes(eth(None) / IP(src=CLIENT4, dst="203.0.113.20") / TCP(sport=5, dport=80) / Raw(b"a" * 100))
    st0 = read_stats(dp)
    for _ in range(5):
        assert prog.test_run(f)[0] == bpf.XDP_TX
    st1 = read_stats(dp)
    assert st1.services[svc.key].packets - st0.services[svc.key].packets == 5
    assert st1.services[svc.key].bytes - st0.services[svc.key].bytes == 5 * len(f)
    assert st1.reasons[Reason.VLAN_PUSH].packets - st0.reasons[Reason.VLAN_PUSH].packets == 5
    assert st1.reasons[Reason.FORWARDED].bytes - st0.reasons[Reason.FORWARDED].bytes == 5 * len(f)
