"""Model-based fuzzing of the XDP program: generated frames (VLAN tags,
IPv4 options, IPv6 extension headers, fragments, ICMP errors, VXLAN and
Geneve encapsulations of all of these, lying length fields, truncations,
stray bytes) go through BPF_PROG_TEST_RUN and through
the reference model of the contract (contract.py); the verdict, the
counters and every byte of a forwarded frame must agree.

CI runs a bounded, seeded run of a few seconds. A longer one:

    XDSR_FUZZ_FRAMES=200000 XDSR_FUZZ_SEED=7 .venv/bin/pytest tests/dataplane/test_fuzz.py -m fuzz

A failure prints the seed, the frame's index and its bytes, so it replays.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from tests.conftest import needs_root, private_pin_dir
from tests.dataplane.contract import VERDICTS, Contract
from tests.dataplane.test_overlay_packets import HOP, PEER4, PEER6, STATE, TENANT_GW, TUNNEL, VIP_MAC, VTEP4, VTEP6
from tests.dataplane.test_packets import CONFIG
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.abi import Reason
from xdsr.dataplane.config import parse_config
from xdsr.dataplane.loader import Dataplane
from xdsr.dataplane.state import apply, read_stats

pytestmark = [needs_root, pytest.mark.fuzz]

FRAMES = int(os.environ.get("XDSR_FUZZ_FRAMES", "600"))
SEED = int(os.environ.get("XDSR_FUZZ_SEED", "20261205"))

LBN = "02:00:00:00:00:aa"
ROUTER = "02:00:00:00:00:01"
# The packet tests' services, and one with more than 255 backends (2-byte slots).
WIDE = [{"mac": f"02:00:00:01:{i >> 8:02x}:{i & 0xFF:02x}", "vlan": 100 + i % 5} for i in range(300)]
SERVICES = parse_config(
    {
        "services": [
            *CONFIG["services"],
            {"vip": "203.0.113.50", "port": 443, "protocol": "tcp", "segment": {"id": 12}, "backends": WIDE},
            {"vip": "2001:db8::50", "port": 443, "protocol": "udp", "segment": {"id": 12}, "backends": WIDE},
            # The overlay packet tests' VXLAN and Geneve services.
            *(s for s in STATE["services"] if s["segment"]["type"] != "vlan"),
        ]
    }
).to_services(next_hop=HOP)
OVERLAY_VNIS = sorted({s.key.seg_id for s in SERVICES if s.key.overlay})

VIPS4 = ["203.0.113.10", "203.0.113.20", "203.0.113.30", "203.0.113.40", "203.0.113.41", "203.0.113.50"]
VIPS6 = ["2001:db8::10", "2001:db8::30", "2001:db8::50", "::ffff:203.0.113.10", "::ffff:203.0.113.30"]
PORTS = [0, 53, 80, 443, 5000, 6000, 7000, 81, 65535]
VIDS = [None, None, 10, 10, 10, 10, 0, 11, 12, 12]


def _addr4(rng: random.Random) -> str:
    return f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _addr6(rng: random.Random) -> str:
    return f"2001:db8:{rng.randrange(1, 65536):x}::{rng.randrange(1, 65536):x}"


def _l4(rng: random.Random, proto: str, sport: int | None = None, dport: int | None = None) -> Packet:
    sport = sport if sport is not None else rng.choice([rng.randrange(1024, 65536), 53, 0])
    dport = dport if dport is not None and rng.random() < 0.9 else rng.choice(PORTS)
    payload = Raw(rng.randbytes(rng.choice([0, 1, 8, 40, 200])))
    if proto == "tcp":
        opts = rng.choice([[], [("MSS", 1460)], [("NOP", None)] * rng.randrange(1, 12)])
        return TCP(sport=sport, dport=dport, flags=rng.choice(["S", "A", "PA"]), options=opts) / payload
    return UDP(sport=sport, dport=dport) / payload


def _ext6(rng: random.Random) -> list[Packet]:
    """An extension chain: mostly none or short, sometimes too long, with
    fragment headers anywhere (first, later, atomic)."""
    chain: list[Packet] = []
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3, 5])):
        kind = rng.choice(["hop", "dest", "routing", "ah", "frag", "frag"])
        if kind == "hop":
            chain.append(IPv6ExtHdrHopByHop())
        elif kind == "dest":
            chain.append(IPv6ExtHdrDestOpt())
        elif kind == "routing":
            chain.append(IPv6ExtHdrRouting(addresses=[]))
        elif kind == "ah":
            chain.append(AH(icv=b"\0" * rng.choice([4, 12])))
        else:
            chain.append(
                IPv6ExtHdrFragment(id=rng.randrange(1 << 32), offset=rng.choice([0, 0, 1, 100]), m=rng.randrange(2))
            )
    return chain


def _quoted_reply(rng: random.Random, family: int, vip: str, client: str, port: int | None, proto: str | None) -> bytes:
    """A reply of the VIP's, as a router quotes it in an ICMP error."""
    aimed = port is not None and rng.random() < 0.8
    proto = proto if aimed and proto else rng.choice(["tcp", "udp"])
    port = port if aimed else rng.choice([53, 80, 443, 5000, 6000, 7000, 0])
    l4 = _l4(rng, proto, sport=port, dport=rng.choice([rng.randrange(1024, 65536), 0]))
    if family == 4:
        ip = IP(src=vip, dst=client, flags="DF", frag=rng.choice([0, 0, 0, 3]))
    else:
        ip = IPv6(src=vip, dst=client)
    raw = bytes(ip / l4 / Raw(b"R" * 300))
    return raw[: rng.choice([len(raw), 28, 24, 36, 48, 52, 100, 1200])]


def _ip(rng: random.Random, vid: int | None) -> Packet:
    """Half the time aimed at a service of this VLAN (its VIP, protocol and
    port), the rest anywhere."""
    family = rng.choice([4, 6])
    kind = rng.choices(["tcp", "udp", "too_big", "icmp", "other"], weights=[30, 30, 30, 5, 5])[0]
    port: int | None = None
    proto: str | None = None
    aimed = [s.key for s in SERVICES if s.key.seg_id == (vid or 0)]
    if aimed and rng.random() < 0.5:
        k = rng.choice(aimed)
        family, port, proto = k.vip.version, k.port, k.protocol
        if kind in ("tcp", "udp"):
            kind = k.protocol
        vip = str(k.vip)
    else:
        vip = rng.choice([*VIPS4, "10.0.0.1"] if family == 4 else [*VIPS6, "2001:db8::99"])
    if family == 4:
        ip: Packet = IP(src=_addr4(rng), dst=vip, id=rng.randrange(65536))
        if rng.random() < 0.15:
            ip.options = rng.choice([[IPOption_RR(routers=["1.2.3.4"])], [IPOption_NOP()] * 4])
        if rng.random() < 0.15:
            ip.flags = rng.choice(["MF", 0])
            ip.frag = rng.choice([0, 1, 185])
        if kind == "too_big":
            code = rng.choice([4, 4, 4, 3])
            to = vip if rng.random() < 0.75 else rng.choice(VIPS4)
            ip.dst = to
            quote = _quoted_reply(rng, 4, vip, _addr4(rng), port, proto)
            return ip / ICMP(type=3, code=code, nexthopmtu=1400) / Raw(quote)
        if kind == "icmp":
            return ip / ICMP() / Raw(b"ping")
        if kind == "other":
            return ip / Raw(rng.randbytes(30)) if rng.random() < 0.5 else ip / IP(src="1.1.1.1", dst=vip) / UDP()
        return ip / _l4(rng, kind, dport=port)
    ip6: Packet = IPv6(src=_addr6(rng), dst=vip)
    for ext in _ext6(rng):
        ip6 = ip6 / ext
    if kind == "too_big":
        to = vip if rng.random() < 0.75 else rng.choice(VIPS6)
        ip6[IPv6].dst = to
        return ip6 / ICMPv6PacketTooBig(mtu=1280) / Raw(_quoted_reply(rng, 6, vip, _addr6(rng), port, proto))
    if kind == "icmp":
        return ip6 / ICMPv6EchoRequest()
    if kind == "other":
        return ip6 / Raw(rng.randbytes(20))
    return ip6 / _l4(rng, kind, dport=port)


def _lie_about_lengths(rng: random.Random, pkt: Packet) -> None:
    """Length fields that disagree with what is there."""
    choice = rng.randrange(6)
    if choice == 0 and pkt.haslayer(IP):
        pkt[IP].len = rng.choice([0, 19, 20, 21, 28, 40, 60, rng.randrange(65536)])
    elif choice == 1 and pkt.haslayer(IP):
        pkt[IP].ihl = rng.randrange(16)
    elif choice == 2 and pkt.haslayer(IPv6):
        pkt[IPv6].plen = rng.choice([0, 4, 8, 16, 20, rng.randrange(65536)])
    elif choice == 3 and pkt.haslayer(UDP):
        pkt[UDP].len = rng.choice([0, 4, 7, 8, 9, rng.randrange(65536)])
    elif choice == 4 and pkt.haslayer(TCP):
        pkt[TCP].dataofs = rng.randrange(16)
    elif choice == 5 and pkt.haslayer(IP):
        pkt[IP].version = rng.choice([6, 5, 0])


def _tunnel(rng: random.Random) -> Packet:
    """An underlay IP/UDP/VXLAN|Geneve frame, mostly to this node's endpoint
    and a VNI with services, carrying what _ip makes for that VNI."""
    vni = rng.choice(OVERLAY_VNIS) if rng.random() < 0.8 else rng.choice([10, 1002, rng.randrange(1, 1 << 24)])
    inner: Packet = Ether(dst=VIP_MAC, src=TENANT_GW)
    r = rng.random()
    if r < 0.04:
        inner = inner / ARP(pdst="10.0.0.1")
    elif r < 0.06:
        inner = inner / Dot1Q(vlan=5) / _ip(rng, vni)
    else:
        inner = inner / _ip(rng, vni)
    if rng.random() < 0.15:
        _lie_about_lengths(rng, inner)
    geneve = vni >= 3000 if rng.random() < 0.9 else rng.random() < 0.5
    v6 = rng.random() < 0.4
    if v6:
        outer: Packet = IPv6(src=PEER6, dst=VTEP6 if rng.random() < 0.9 else "2001:db8:f::99")
    else:
        outer = IP(src=PEER4, dst=VTEP4 if rng.random() < 0.9 else "192.0.2.99", ttl=rng.randrange(1, 256))
    port = (6081 if geneve else 4789) if rng.random() < 0.92 else rng.choice([4789, 6081, 4790, 53])
    udp = UDP(sport=rng.randrange(1024, 65536), dport=port)
    if rng.random() < 0.3:
        udp.chksum = 0
    if geneve:
        opts = [
            GeneveOptions(
                classid=rng.randrange(65536), type=rng.randrange(128), data=rng.randbytes(4 * rng.randrange(8))
            )
            for _ in range(rng.choice([0, 0, 1, 2, 3]))
        ]
        tun: Packet = GENEVE(
            vni=vni,
            options=opts,
            critical=int(rng.random() < 0.08),
            oam=int(rng.random() < 0.05),
            version=0 if rng.random() < 0.95 else rng.randrange(1, 4),
            proto=0x6558 if rng.random() < 0.95 else 0x0800,
        )
    else:
        tun = VXLAN(vni=vni, flags=0x08 if rng.random() < 0.93 else rng.choice([0, 0x0C, 0x80]))
    return outer / udp / tun / inner


def generate(rng: random.Random) -> bytes:
    r = rng.random()
    dst = LBN if r < 0.93 else rng.choice(["02:00:00:00:00:bb", "ff:ff:ff:ff:ff:ff"])
    frame: Packet = Ether(dst=dst, src=ROUTER)
    vid = rng.choice(VIDS)
    if vid is not None:
        frame = frame / Dot1Q(vlan=vid, prio=rng.randrange(8))
    r = rng.random()
    frame = frame / (ARP(pdst="10.0.0.1") if r < 0.03 else _tunnel(rng) if r < 0.3 else _ip(rng, vid))
    if rng.random() < 0.2:
        _lie_about_lengths(rng, frame)
    raw = bytearray(bytes(frame))
    if rng.random() < 0.15:
        raw = raw[: rng.randrange(14, len(raw) + 1)]
    if rng.random() < 0.2:
        raw += rng.randbytes(rng.choice([1, 4, 18, 46]))  # Ethernet padding, or junk after the datagram
    if rng.random() < 0.05:
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw)


def frames(seed: int, n: int) -> Iterator[tuple[int, bytes]]:
    rng = random.Random(seed)
    for i in range(n):
        yield i, generate(rng)


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Dataplane, bpf.Program]]:
    with private_pin_dir() as pin, Dataplane.create_or_open(pin, max_services=64) as dp:
        apply(dp, SERVICES)
        prog = dp.load_program(LBN, tunnel=TUNNEL)
        yield dp, prog
        prog.close()


def _counters(dp: Dataplane) -> dict[Reason, int]:
    return {r: c.packets for r, c in read_stats(dp, services=[]).reasons.items()}


def test_the_program_does_what_the_contract_says(loaded: tuple[Dataplane, bpf.Program]) -> None:
    dp, prog = loaded
    model = Contract(SERVICES, LBN, tunnel=TUNNEL)
    seen: dict[Reason, int] = {}
    failures: list[str] = []
    before = _counters(dp)
    for i, frame in frames(SEED, FRAMES):
        want = model.run(frame)
        verdict, out, _ = prog.test_run(frame)
        after = _counters(dp)
        counted = {r for r in Reason if after[r] != before[r]}
        before = after
        problems = []
        if verdict != VERDICTS[want.verdict]:
            problems.append(f"verdict {bpf.XDP_ACTION_NAMES.get(verdict, verdict)}, contract says {want.verdict}")
        elif want.verdict == "tx" and out != want.frame:
            problems.append(f"sent {out.hex()}\n  contract: {(want.frame or b'').hex()}")
        elif want.verdict == "pass" and out != frame:
            problems.append("a passed frame was changed")
        if counted != want.counted:
            problems.append(
                f"counted {sorted(r.name for r in counted)}, contract: {sorted(r.name for r in want.counted)}"
            )
        if problems:
            failures.append(f"frame {i} (seed {SEED}): {frame.hex()}\n  {Ether(frame)!r}\n  " + "\n  ".join(problems))
            if len(failures) >= 5:
                break
        for r in want.counted:
            seen[r] = seen.get(r, 0) + 1
    assert not failures, "\n\n".join(failures)
    # The generator must reach every part of the contract, or agreeing
    # proves little: every reason (TX_ERROR through tunnel backends whose
    # endpoint is of the other family; a full headroom a test run cannot
    # provoke).
    assert set(seen) == set(Reason), seen
