"""VXLAN and Geneve frames through the XDP program (BPF_PROG_TEST_RUN).

Cases are data, as in test_packets.py: an input frame built with scapy, the
verdict, the reason counted and, for forwarded frames, the exact output.
The expected output is the input re-encapsulated *by scapy's own VXLAN and
GENEVE layers*: outer MACs, outer addresses, VNI and inner MACs set, the
outer IPv4 header checksum and a non-zero outer UDP checksum recomputed
from scratch; so these cases prove that the program's incremental checksum
updates give what a full computation gives. The backend of multi-backend
services comes from the Python Maglev and flow-hash mirrors.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Iterator

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from tests.conftest import needs_root, private_pin_dir
from tests.dataplane.test_packets import Case, run_case
from xdsr.dataplane import abi
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane import services as dpservices
from xdsr.dataplane.abi import Reason
from xdsr.dataplane.flowhash import flow_hash, slot_of
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.model import Backend, Service, TunnelEndpoint
from xdsr.dataplane.state import Stats, apply, read_index, read_stats
from xdsr.dataplane.tables import maglev_slots
from xdsr.model.agent import Services

pytestmark = needs_root

LBN = "02:00:00:00:00:aa"  # the trunk's MAC
ROUTER = "02:00:00:00:00:01"  # the underlay router that hands us the frames
HOP = "02:00:00:00:00:fe"  # the underlay next hop towards the backends' endpoints
VTEP4, VTEP6 = "192.0.2.1", "2001:db8:f::1"  # this node's tunnel endpoint
PEER4, PEER6 = "192.0.2.100", "2001:db8:f::100"  # the endpoint that sent the frame
VIP_MAC, TENANT_GW = "02:00:00:00:0a:0a", "02:00:00:00:0a:01"  # inner MACs as the tenant sent them
CLIENT4, CLIENT6 = "198.51.100.7", "2001:db8:ffff::7"
VIP4, VIP6 = "203.0.113.10", "2001:db8::10"
B1, B2, B3, B4 = "02:00:00:00:01:01", "02:00:00:00:02:02", "02:00:00:00:03:03", "02:00:00:00:04:04"
TUNNEL = TunnelEndpoint(ipaddress.IPv4Address(VTEP4), ipaddress.IPv6Address(VTEP6))


def _m(mac: str, vni: int, vtep: str, **kw: object) -> dict[str, object]:
    return {"mac": mac, "vni": vni, "vtep": vtep, **kw}


MANY = [_m(f"02:00:00:00:10:{i:02x}", 2000, f"192.0.2.{20 + i % 3}", weight=1 + i % 2) for i in range(8)]
# Endpoints of both families: three entries per backend, not the compact two
# (an IPv4 endpoint's address in the second entry all the same).
MIXED = [_m(f"02:00:00:00:20:{i:02x}", 2002, f"192.0.2.{30 + i}" if i % 2 else f"2001:db8:f::{30 + i}")
         for i in range(6)]  # fmt: skip

STATE = {
    "services": [
        # Tenant 1 (VXLAN 1000) and tenant 2 (VXLAN 1001): the same VIP, the
        # same backend addresses behind other VNIs.
        {"vip": VIP4, "port": 80, "protocol": "tcp", "segment": {"type": "vxlan", "id": 1000},
         "backends": [_m(B1, 2000, "192.0.2.21", address="10.0.0.5")]},
        {"vip": VIP4, "port": 80, "protocol": "tcp", "segment": {"type": "vxlan", "id": 1001},
         "backends": [_m(B2, 2001, "192.0.2.22", address="10.0.0.5")]},
        {"vip": VIP4, "port": 53, "protocol": "udp", "segment": {"type": "vxlan", "id": 1000}, "backends": MANY},
        {"vip": VIP6, "port": 443, "protocol": "tcp", "segment": {"type": "vxlan", "id": 1000},
         "backends": [_m(B3, 2000, "2001:db8:f::21")]},
        {"vip": VIP6, "port": 444, "protocol": "tcp", "segment": {"type": "vxlan", "id": 1000},
         "backends": [_m(B2, 2000, "192.0.2.24")]},
        {"vip": VIP4, "port": 8080, "protocol": "tcp", "segment": {"type": "vxlan", "id": 1000},
         "backends": [_m(B4, 2000, "2001:db8:f::22")]},
        {"vip": VIP4, "port": 80, "protocol": "tcp", "segment": {"type": "geneve", "id": 3000},
         "backends": [_m(B3, 3001, "192.0.2.23")]},
        {"vip": VIP6, "port": 443, "protocol": "tcp", "segment": {"type": "geneve", "id": 3000},
         "backends": [_m(B4, 3001, "2001:db8:f::24")]},
        {"vip": VIP4, "port": 81, "protocol": "tcp", "segment": {"type": "vxlan", "id": 1000}, "backends": []},
        {"vip": VIP4, "port": 82, "protocol": "udp", "segment": {"type": "vxlan", "id": 1000}, "backends": MIXED},
        # The same VIP and port on VLAN 10, and a VLAN id equal to a VNI.
        {"vip": VIP4, "port": 80, "protocol": "tcp", "segment": {"type": "vlan", "id": 10},
         "backends": [{"mac": B4, "vlan": 100}]},
    ]
}  # fmt: skip


def _services() -> list[Service]:
    rules = Services.model_validate(STATE).services
    dpservices.check(rules)
    out = []
    for r in rules:
        svc, unresolved = dpservices.to_service(r, hop_of=lambda _vtep: HOP)
        assert not unresolved
        out.append(svc)
    return out


SERVICES = _services()


def _service(vip: str, port: int, seg_id: int) -> Service:
    for s in SERVICES:
        if str(s.key.vip) == vip and s.key.port == port and s.key.seg_id == seg_id:
            return s
    raise KeyError((vip, port, seg_id))


def _backend(svc: Service, src: str, dst: str, proto: int, sport: int, dport: int) -> Backend:
    table = maglev_slots(svc.table_size, svc.backends)
    return svc.backends[int(table[slot_of(flow_hash(src, dst, proto, sport, dport, 0), svc.table_size)])]


def inner4(dport: int = 80, sport: int = 40000, proto: str = "tcp", dst: str = VIP4) -> Packet:
    l4 = TCP(sport=sport, dport=dport, flags="S") if proto == "tcp" else UDP(sport=sport, dport=dport)
    return Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=dst) / l4 / Raw(b"i" * 12)


def inner6(dport: int = 443, sport: int = 40000) -> Packet:
    return Ether(dst=VIP_MAC, src=TENANT_GW) / IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=sport, dport=dport) / Raw(b"j")


def encap(
    inner: Packet,
    *,
    vni: int = 1000,
    geneve: bool = False,
    v6: bool = False,
    tag: int | None = None,
    dst: str | None = None,
    port: int | None = None,
    zero_csum: bool = False,
    options: list[Packet] | None = None,
    critical: bool = False,
    oam: bool = False,
    version: int = 0,
    proto: int = 0x6558,
    flags: int = 0x08,
) -> Packet:
    """inner as an underlay endpoint sends it to dst (default: this node)."""
    outer = Ether(dst=LBN, src=ROUTER)
    if tag is not None:
        outer = outer / Dot1Q(vlan=tag, prio=3)
    outer = outer / (IPv6(src=PEER6, dst=dst or VTEP6) if v6 else IP(src=PEER4, dst=dst or VTEP4, ttl=17))
    udp = UDP(sport=51234, dport=port or (6081 if geneve else 4789))
    if zero_csum:
        udp.chksum = 0
    if geneve:
        tun: Packet = GENEVE(
            vni=vni, proto=proto, options=options or [], critical=int(critical), oam=int(oam), version=version
        )
    else:
        tun = VXLAN(vni=vni, flags=flags)
    return Ether(bytes(outer / udp / tun / inner))


def reencap(frame: Packet, be: Backend) -> bytes:
    """frame as the program must send it to backend be, built by scapy."""
    p = Ether(bytes(frame))
    p.dst, p.src = be.hop_mac, LBN
    outer = p[IP] if p.haslayer(IP) and not (p.haslayer(IPv6) and p.getlayer(IPv6) is p.payload) else p[IPv6]
    if isinstance(p.payload, Dot1Q):
        outer = p.payload.payload
    outer.src = VTEP4 if isinstance(outer, IP) else VTEP6
    outer.dst = str(be.vtep)
    if isinstance(outer, IP):
        del outer.chksum
    udp = outer.payload
    if udp.chksum:
        del udp.chksum  # a set checksum must be correct afterwards
    tun = udp.payload
    tun.vni = be.vni
    tun.payload.dst, tun.payload.src = be.mac, LBN
    return bytes(p)


def _cases() -> Iterator[Case]:
    udp = socket.IPPROTO_UDP
    s80 = _service(VIP4, 80, 1000)
    tx, ps, dr = bpf.XDP_TX, bpf.XDP_PASS, bpf.XDP_DROP
    fwd = Reason.FORWARDED

    # Forwarded: every combination of tunnel, underlay family and inner family.
    for geneve in (False, True):
        kind = "geneve" if geneve else "vxlan"
        vni = 3000 if geneve else 1000
        for v6 in (False, True):
            under = "v6" if v6 else "v4"
            f = encap(inner4(), vni=vni, geneve=geneve, v6=v6)
            svc = _service(VIP4, 80, vni)
            if v6:
                # The v4 VIP's backend has an IPv4 endpoint: another family
                # than the underlay the frame came on.
                yield Case(f"{kind} over {under}, backend endpoint of the other family", bytes(f), dr,
                           Reason.TX_ERROR)  # fmt: skip
            else:
                yield Case(f"{kind} over {under}, inner v4 tcp", bytes(f), tx, fwd, reencap(f, svc.backends[0]))
            f = encap(inner6(), vni=vni, geneve=geneve, v6=v6)
            svc = _service(VIP6, 443, vni)
            if v6:
                yield Case(f"{kind} over {under}, inner v6 tcp", bytes(f), tx, fwd, reencap(f, svc.backends[0]))
            else:
                yield Case(f"{kind} over {under}, v6 endpoint behind a v4 underlay", bytes(f), dr, Reason.TX_ERROR)
    f = encap(inner4(8080), v6=True)
    be = _service(VIP4, 8080, 1000).backends[0]
    yield Case("vxlan over v6, inner v4 to a backend with a v6 endpoint", bytes(f), tx, fwd, reencap(f, be))
    f = encap(inner4(8080), v6=True, geneve=False, zero_csum=True)
    yield Case("vxlan over v6 with a zero UDP checksum (RFC 6935): stays zero", bytes(f), tx, fwd, reencap(f, be))
    f = encap(inner4(), zero_csum=True)
    assert f[UDP].chksum == 0
    yield Case("vxlan over v4 without UDP checksum", bytes(f), tx, fwd, reencap(f, s80.backends[0]))
    f = encap(inner4(), tag=42)
    yield Case("vxlan over a tagged underlay: the tag stays", bytes(f), tx, fwd, reencap(f, s80.backends[0]))
    f = encap(inner4(), geneve=True, vni=3000, v6=False, tag=7)
    be = _service(VIP4, 80, 3000).backends[0]
    yield Case("geneve over a tagged underlay", bytes(f), tx, fwd, reencap(f, be))
    raw = bytearray(bytes(encap(inner4())))
    f = Ether(bytes(raw))
    f[IP].options = [b"\x94\x04\x00\x00"]  # router alert: IHL 6
    f[IP].len = None
    f[IP].ihl = None
    f[IP].chksum = None
    f = Ether(bytes(f))
    assert f[IP].ihl == 6
    yield Case("vxlan over v4 with outer IP options", bytes(f), tx, fwd, reencap(f, s80.backends[0]))
    f = Ether(bytes(encap(inner4())) + b"\0" * 9)
    yield Case("vxlan frame with Ethernet padding: kept", bytes(f), tx, fwd, reencap(f, s80.backends[0]))

    # Geneve options of every size class, skipped and kept.
    for n_opts, size in [(1, 0), (1, 4), (2, 12), (1, 124), (2, 116)]:
        opts = [GeneveOptions(classid=0x0102, type=i + 1, data=b"o" * size) for i in range(n_opts)]
        f = encap(inner4(), geneve=True, vni=3000, options=opts)
        optlen = f[GENEVE].optionlen * 4
        yield Case(f"geneve with {optlen} bytes of options", bytes(f), tx, fwd, reencap(f, be))
    opts = [GeneveOptions(classid=1, type=1, data=b"p" * 120), GeneveOptions(classid=1, type=2, data=b"q" * 120)]
    f = encap(inner6(), geneve=True, vni=3000, v6=True, options=opts)
    assert f[GENEVE].optionlen == 62
    yield Case("geneve over v6 with 248 bytes of options", bytes(f), tx, fwd,
               reencap(f, _service(VIP6, 443, 3000).backends[0]))  # fmt: skip

    # Multi-backend service: the flow's backend, as Python computes it.
    rng = random.Random(15)
    svc = _service(VIP4, 53, 1000)
    for i in range(16):
        src, sport = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}", rng.randrange(1024, 65536)
        inner = Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=src, dst=VIP4) / UDP(sport=sport, dport=53) / Raw(b"d")
        f = encap(inner)
        yield Case(f"vxlan udp flow {i} onto a Maglev slot", bytes(f), tx, fwd,
                   reencap(f, _backend(svc, src, VIP4, udp, sport, 53)))  # fmt: skip

    yield from _mixed_families()
    yield from _fast_path_edges()

    # Two tenants, one VIP: the VNI picks the service.
    f = encap(inner4(), vni=1001)
    yield Case("same VIP on VNI 1001: tenant 2's backend", bytes(f), tx, fwd,
               reencap(f, _service(VIP4, 80, 1001).backends[0]))  # fmt: skip
    inner_frag = Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4, flags="MF", id=9) / Raw(b"f" * 16)
    inner_frag[IP].proto = udp
    f = encap(inner_frag)
    yield Case("inner IPv4 fragment: the fragments' entry", bytes(f), tx, fwd, reencap(f, _frag(svc)))

    # Not this node's, or no service: the host's, untouched.
    f = encap(inner4(), vni=1002)
    yield Case("vxlan, VNI without service", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(), vni=10)
    yield Case("vxlan, VNI equal to the VLAN id of a VLAN service", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(), dst="192.0.2.99")
    yield Case("vxlan to another tunnel endpoint", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner6(), v6=True, dst="2001:db8:f::99")
    yield Case("vxlan over v6 to another tunnel endpoint", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(), port=4790)
    yield Case("vxlan on another UDP port", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(), geneve=True, vni=3000, port=4789)
    yield Case("geneve header on the VXLAN port: VXLAN's I flag unset", bytes(f), dr, Reason.MALFORMED)
    f = encap(inner4(), vni=3000, port=6081)
    yield Case("vxlan header on the Geneve port: not Ethernet (protocol 0)", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(), flags=0x00)
    yield Case("vxlan without the I flag", bytes(f), dr, Reason.MALFORMED)
    f = encap(inner4(), flags=0x0C)
    yield Case("vxlan with a reserved flag set as well: ignored", bytes(f), tx, fwd, reencap(f, s80.backends[0]))
    f = encap(inner4(), geneve=True, vni=3000, critical=True, options=[GeneveOptions(type=0x80, data=b"c" * 4)])
    yield Case("geneve with critical options, for a service", bytes(f), dr, Reason.UNSUPPORTED)
    f = encap(inner4(), geneve=True, vni=3003, critical=True, options=[GeneveOptions(type=0x80, data=b"c" * 4)])
    yield Case("geneve with critical options, VNI without service", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(), geneve=True, vni=3000, oam=True)
    yield Case("geneve control (OAM) frame", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(), geneve=True, vni=3000, version=1)
    yield Case("geneve of an unknown version", bytes(f), dr, Reason.UNSUPPORTED)
    f = encap(IP(src=CLIENT4, dst=VIP4) / TCP(dport=80), geneve=True, vni=3000, proto=0x0800)
    yield Case("geneve carrying IPv4 without Ethernet", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(Ether(dst="ff:ff:ff:ff:ff:ff", src=TENANT_GW) / ARP(pdst=VIP4))
    yield Case("vxlan carrying ARP", bytes(f), ps, Reason.NOT_IP)
    f = encap(Ether(dst=VIP_MAC, src=TENANT_GW) / Dot1Q(vlan=5) / IP(src=CLIENT4, dst=VIP4) / TCP(dport=80))
    yield Case("vxlan carrying a tagged inner frame", bytes(f), ps, Reason.NOT_IP)
    whole = IP(src=PEER4, dst=VTEP4, flags="MF") / UDP(sport=5, dport=4789) / VXLAN(vni=1000) / inner4()
    f = Ether(dst=LBN, src=ROUTER) / whole
    yield Case("outer IPv4 fragment to the VXLAN port", bytes(f), ps, Reason.NO_SERVICE)
    f = encap(inner4(81))
    yield Case("vxlan service without backends", bytes(f), dr, Reason.NO_BACKEND)
    f = Ether(dst="02:00:00:00:00:bb", src=ROUTER) / encap(inner4()).payload
    yield Case("vxlan frame flooded to us for another MAC", bytes(f), ps, Reason.NOT_FOR_US)

    # VLAN traffic to the same VIP still takes the VLAN service.
    f = Ether(dst=LBN, src=ROUTER) / Dot1Q(vlan=10) / IP(src=CLIENT4, dst=VIP4) / TCP(sport=1, dport=80)
    out = Ether(dst=B4, src=LBN) / Dot1Q(vlan=100) / f[Dot1Q].payload.copy()
    yield Case("VLAN 10 to the VIP: the VLAN service", bytes(f), tx, fwd, bytes(out))

    yield from _truncations()


def _mixed_families() -> Iterator[Case]:
    """A service whose endpoints are of both families takes three entries per
    backend: each flow reaches its backend when the endpoint is of the
    underlay's family (on the fast path, without UDP checksum, and on the
    general one), and is dropped as a tx error when not."""
    rng = random.Random(82)
    svc = _service(VIP4, 82, 1000)
    seen = set()
    for i in range(24):
        src, sport = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}", rng.randrange(1024, 65536)
        be = _backend(svc, src, VIP4, socket.IPPROTO_UDP, sport, 82)
        inner = Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=src, dst=VIP4) / UDP(sport=sport, dport=82) / Raw(b"m")
        v6, zero = i % 3 == 2, i % 3 == 1
        f = encap(inner, v6=v6, zero_csum=zero)
        under = "v6" if v6 else ("v4 without UDP checksum" if zero else "v4")
        name = f"mixed endpoint families: flow {i} over {under} to a v{be.vtep.version} endpoint"
        seen.add((v6, be.vtep.version))
        if be.vtep.version == (6 if v6 else 4):
            yield Case(name, bytes(f), bpf.XDP_TX, Reason.FORWARDED, reencap(f, be))
        else:
            yield Case(name, bytes(f), bpf.XDP_DROP, Reason.TX_ERROR)
    assert seen == {(False, 4), (False, 6), (True, 4), (True, 6)}  # every combination is a case


def _fast_path_edges() -> Iterator[Case]:
    """The program takes VXLAN over untagged IPv4 (IHL 5, not a fragment)
    carrying untagged IPv4 (IHL 5, not a fragment) TCP or UDP at fixed
    offsets (parse_tunnel4_fast), and rewrites it there when the outer UDP
    checksum is zero (rewrite_tunnel4_fast); anything else, or a frame whose
    lengths it doubts, goes through the general parsers. Both ways must give
    the same verdicts and bytes: these are the frames at the edge."""
    tx, ps, dr, fwd = bpf.XDP_TX, bpf.XDP_PASS, bpf.XDP_DROP, Reason.FORWARDED
    s80 = _service(VIP4, 80, 1000)
    svc53 = _service(VIP4, 53, 1000)
    rng = random.Random(16)
    for i in range(8):
        # The fast rewrite's checksum update, onto every endpoint of the service.
        src, sport = f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}", rng.randrange(1024, 65536)
        inner = Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=src, dst=VIP4) / UDP(sport=sport, dport=53)
        f = encap(inner, zero_csum=True)
        yield Case(f"fast path: vxlan udp flow {i} without UDP checksum, the smallest inner frame", bytes(f), tx, fwd,
                   reencap(f, _backend(svc53, src, VIP4, socket.IPPROTO_UDP, sport, 53)))  # fmt: skip
    f = encap(inner4(), zero_csum=True, tag=42)
    yield Case("general path: vxlan over a tagged underlay without UDP checksum", bytes(f), tx, fwd,
               reencap(f, s80.backends[0]))  # fmt: skip
    f = encap(inner4(), zero_csum=True)
    f[IP].flags = "DF"
    del f[IP].chksum
    f = Ether(bytes(f))
    yield Case("fast path: outer IPv4 with DF set (not a fragment)", bytes(f), tx, fwd, reencap(f, s80.backends[0]))
    inner = inner4()
    inner[IP].options = [b"\x94\x04\x00\x00"]  # router alert: IHL 6
    f = encap(Ether(bytes(inner)), zero_csum=True)
    assert f[VXLAN].payload[IP].ihl == 6
    yield Case("general path: inner IPv4 with options (IHL 6)", bytes(f), tx, fwd, reencap(f, s80.backends[0]))
    frag = Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4, frag=3, id=9) / Raw(b"f" * 16)
    frag[IP].proto = socket.IPPROTO_UDP
    f = encap(frag, zero_csum=True)
    yield Case("general path: inner IPv4 later fragment", bytes(f), tx, fwd, reencap(f, _frag(svc53)))
    f = encap(inner6(444), zero_csum=True)
    yield Case("general path: inner IPv6 over a v4 underlay", bytes(f), tx, fwd,
               reencap(f, _service(VIP6, 444, 1000).backends[0]))  # fmt: skip
    gbe = _service(VIP4, 80, 3000).backends[0]
    f = encap(inner4(), geneve=True, vni=3000, zero_csum=True)
    yield Case("fast path: geneve without options or UDP checksum", bytes(f), tx, fwd, reencap(f, gbe))
    f = encap(inner4(), geneve=True, vni=3000, zero_csum=True, options=[GeneveOptions(data=b"o" * 4)])
    yield Case("general path: geneve with an option, without UDP checksum", bytes(f), tx, fwd, reencap(f, gbe))
    f = encap(inner4(), geneve=True, vni=3000, zero_csum=True, critical=True)
    yield Case("general path: geneve with the C bit and no options, for a service", bytes(f), dr, Reason.UNSUPPORTED)
    f = encap(inner4(), geneve=True, vni=3000, zero_csum=True)
    f[GENEVE].reserved = 1
    f = Ether(bytes(f))
    yield Case("general path: geneve with a reserved bit set: ignored", bytes(f), tx, fwd, reencap(f, gbe))
    lies: list[tuple[str, Packet, int, Reason]] = [
        ("inner TCP data offset 4", Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4)
         / TCP(dport=80, dataofs=4), dr, Reason.MALFORMED),
        ("inner TCP data offset past the datagram", Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4)
         / TCP(dport=80, dataofs=15), dr, Reason.MALFORMED),
        ("inner UDP length past its datagram", Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4)
         / UDP(dport=53, len=200), dr, Reason.MALFORMED),
        ("inner UDP length below its header", Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4)
         / UDP(dport=53, len=7), dr, Reason.MALFORMED),
        ("inner UDP to port 0", Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4) / UDP(dport=0),
         ps, Reason.NO_SERVICE),
        ("inner IP length below its header", Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4, len=19)
         / TCP(dport=80), dr, Reason.MALFORMED),
        ("inner IP length past the frame", Ether(dst=VIP_MAC, src=TENANT_GW) / IP(src=CLIENT4, dst=VIP4, len=400)
         / TCP(dport=80), dr, Reason.MALFORMED),
    ]  # fmt: skip
    for name, inner, verdict, reason in lies:
        f = encap(inner, zero_csum=True)
        yield Case(f"fast path doubts, general path judges: {name}", bytes(f), verdict, reason)
    raw = bytearray(bytes(encap(inner4(), zero_csum=True)))
    raw[38:40] = (int.from_bytes(raw[38:40], "big") + 4).to_bytes(2, "big")
    yield Case("outer UDP length past the outer IP datagram", bytes(raw), dr, Reason.MALFORMED)
    raw = bytearray(bytes(encap(inner4(), zero_csum=True)))
    raw[16:18] = (int.from_bytes(raw[16:18], "big") + 4).to_bytes(2, "big")
    yield Case("outer IP length past the frame", bytes(raw), dr, Reason.MALFORMED)


def _frag(svc: Service) -> Backend:
    table = maglev_slots(svc.table_size, svc.backends)
    h = flow_hash(CLIENT4, VIP4, socket.IPPROTO_UDP, fragment=True)
    return svc.backends[int(table[slot_of(h, svc.table_size)])]


def _truncations() -> Iterator[Case]:
    """Cut at every header boundary, twice: the frame cut (the outer IP
    length then reaches past it), and the outer datagram itself ending there
    (outer lengths consistent, the tunnel's content cut): never forwarded."""
    opts = [GeneveOptions(classid=1, type=1, data=b"g" * 8)]
    for name, f in [
        ("vxlan over v4", encap(inner4())),
        ("geneve over v6 with options", encap(inner6(), geneve=True, vni=3000, v6=True, options=opts)),
        ("vxlan over a tagged v4 underlay", encap(inner4(), tag=9)),
    ]:
        raw = bytes(f)
        outer = f.payload.payload if isinstance(f.payload, Dot1Q) else f.payload
        eth_len = len(raw) - len(bytes(outer))
        l3_len = len(bytes(outer)) - len(bytes(outer.payload))
        udp_at = eth_len + l3_len
        tun = outer.payload.payload
        tun_len = len(bytes(tun)) - len(bytes(tun.payload))
        inner_at = udp_at + 8 + tun_len
        ip_at = inner_at + 14
        inner_ip = tun.payload.payload
        l4_at = ip_at + len(bytes(inner_ip)) - len(bytes(inner_ip.payload))
        bounds = sorted(
            {
                14,  # BPF_PROG_TEST_RUN takes nothing shorter than an Ethernet header
                eth_len - 1,
                eth_len + 10,
                udp_at - 1,
                udp_at + 4,
                udp_at + 7,
                udp_at + 8,
                udp_at + 12,
                inner_at - 1,
                inner_at,
                inner_at + 13,
                ip_at,
                ip_at + 19,
                l4_at,
                l4_at + 19,
                len(raw) - 1,
            }
        )
        for cut in (b for b in bounds if b >= 14):
            yield Case(f"{name}: frame cut at {cut}", raw[:cut], bpf.XDP_DROP, Reason.MALFORMED)
        for cut in sorted({udp_at + 7, udp_at + 8 + 3, udp_at + 8 + 7, inner_at - 1, inner_at + 13, ip_at + 10,
                           ip_at + 19, l4_at + 10, len(raw) - 1}):  # fmt: skip
            yield Case(f"{name}: outer datagram ending at {cut}", _datagram_cut(raw, eth_len, cut), bpf.XDP_DROP,
                       Reason.MALFORMED)  # fmt: skip
        if "v6" not in name:
            # The inner datagram claims more than the outer UDP payload
            # holds; the frame has the bytes (padding).
            cut = len(raw) - 4
            yield Case(f"{name}: inner datagram past the outer one, into padding",
                       _datagram_cut(raw, eth_len, cut) + raw[cut:], bpf.XDP_DROP, Reason.MALFORMED)  # fmt: skip


def _datagram_cut(raw: bytes, eth_len: int, end: int) -> bytes:
    """raw cut at end, with the outer IP and UDP lengths (and checksums) made to fit."""
    p = Ether(raw[:end])
    outer = p[IPv6] if (raw[eth_len] >> 4) == 6 else p[IP]
    if isinstance(outer, IP):
        outer.len = end - eth_len
        del outer.chksum
    else:
        outer.plen = end - eth_len - 40
    if outer.payload.__class__ is UDP or isinstance(outer.payload, UDP):
        outer.payload.len = end - eth_len - (len(bytes(outer)) - len(bytes(outer.payload)))
        outer.payload.chksum = 0
        hdr = bytes(p)[: eth_len + (len(bytes(outer)) - len(bytes(outer.payload))) + 8]
        rest = raw[len(hdr) : end]
        return hdr + rest
    out = bytes(p)
    return out[:end]


CASES = list(_cases())


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Dataplane, bpf.Program]]:
    with private_pin_dir() as pin, Dataplane.create_or_open(pin, max_services=64) as dp:
        apply(dp, SERVICES)
        prog = dp.load_program(LBN, tunnel=TUNNEL)
        yield dp, prog
        prog.close()


def _overlay_packets(st: Stats) -> int:
    return sum(c.packets for k, c in st.services.items() if k.overlay)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_overlay_packet(loaded: tuple[Dataplane, bpf.Program], case: Case) -> None:
    dp, prog = loaded
    st0 = read_stats(dp)
    run_case(prog, case)
    st1 = read_stats(dp)
    assert st1.reasons[case.reason].packets == st0.reasons[case.reason].packets + 1
    # A re-encapsulated frame counts under its (overlay) service alone.
    overlay = _overlay_packets(st1) - _overlay_packets(st0)
    assert overlay == (1 if case.verdict == bpf.XDP_TX and Ether(case.frame).haslayer(UDP) and "VLAN" not in case.name
                       else 0)  # fmt: skip


def test_checksums_valid(loaded: tuple[Dataplane, bpf.Program]) -> None:
    """Independently of the expected bytes: every forwarded frame's outer
    checksums verify (scapy recomputes them and finds the same)."""
    _, prog = loaded
    for case in CASES:
        if case.verdict != bpf.XDP_TX or "VLAN" in case.name:
            continue
        _, out, _ = prog.test_run(case.frame)
        p = Ether(out)
        outer = p[IP] if p.haslayer(IP) and p[IP].dst.startswith("192.0.2.") else p[IPv6]
        udp = outer.payload
        if isinstance(outer, IP):
            got = outer.chksum
            del outer.chksum
            assert IP(bytes(outer)).chksum == got, case.name
        if udp.chksum:
            got = udp.chksum
            del udp.chksum
            assert Ether(bytes(p))[UDP].chksum == got, case.name


def test_no_tunnel_endpoint_configured() -> None:
    """Without an endpoint the program parses no overlay frame: the host's."""
    with private_pin_dir() as pin, Dataplane.create_or_open(pin, max_services=64) as dp:
        apply(dp, SERVICES)
        prog = dp.load_program(LBN)
        try:
            f = bytes(encap(inner4()))
            verdict, out, _ = prog.test_run(f)
            assert verdict == bpf.XDP_PASS and out == f
            assert read_stats(dp).reasons[Reason.NO_SERVICE].packets == 1
        finally:
            prog.close()


def test_a_tunnel_that_is_off_matches_no_port_0() -> None:
    """VXLAN off (port 0) and Geneve on: a later UDP fragment to the
    endpoint (keyed with port 0) is not taken for VXLAN, but goes to the
    host like any frame for the endpoint's address with no service."""
    from scapy.layers.inet import fragment

    geneve_only = TunnelEndpoint(ipaddress.IPv4Address(VTEP4), None, vxlan_port=0)
    whole = encap(inner4(), geneve=True)
    later = Ether(dst=LBN, src=ROUTER) / fragment(whole[IP], fragsize=64)[1]
    with private_pin_dir() as pin, Dataplane.create_or_open(pin, max_services=64) as dp:
        apply(dp, SERVICES)
        prog = dp.load_program(LBN, tunnel=geneve_only)
        try:
            f = bytes(later)
            verdict, out, _ = prog.test_run(f)
            assert verdict == bpf.XDP_PASS and out == f
            assert read_stats(dp).reasons[Reason.MALFORMED].packets == 0
        finally:
            prog.close()


def test_installed_tunnel_backends_read_back(loaded: tuple[Dataplane, bpf.Program]) -> None:
    from xdsr.dataplane.state import installed

    dp, _ = loaded
    got = {i.service.key: i.service for i in installed(dp)}
    for svc in SERVICES:
        back = got[svc.key]
        assert [(b.mac, b.vlan, b.weight, b.vni, b.vtep, b.hop_mac) for b in back.backends] == [
            (b.mac, b.vlan, b.weight, b.vni, b.vtep, b.hop_mac) for b in svc.backends
        ]


def test_ipv4_endpoints_take_one_aligned_32_byte_entry(loaded: tuple[Dataplane, bpf.Program]) -> None:
    """An overlay service whose endpoints are all IPv4 has backends of two
    entries starting at an even entry (32 bytes each: one cache line); with
    an IPv6 endpoint among them, three; VLAN services one."""
    entries = read_index(loaded[0])
    assert {e.backend_stride for k, e in entries.items() if not k.overlay} == {1}
    assert {e.backend_stride for k, e in entries.items() if k.overlay} == {abi.TUNNEL4_STRIDE, abi.TUNNEL_STRIDE}
    compact = {k for k, e in entries.items() if e.backend_stride == abi.TUNNEL4_STRIDE}
    services = {s.key: s for s in SERVICES}
    want = {k for k, s in services.items() if k.overlay and all(b.vtep and b.vtep.version == 4 for b in s.backends)}
    assert compact & set(services) == want
    assert _service(VIP4, 53, 1000).key in want and _service(VIP4, 82, 1000).key not in want
    # Fragments' entries (port 0) share a service's table, stride included.
    assert all(entries[k].backend_base % 2 == 0 for k in compact)
