"""Ask the running data plane what it does with a packet, without sending
one: the attached program itself runs on a made-up frame (BPF_PROG_TEST_RUN).

`xdsr dp probe` uses it to answer "where does this flow go?", and the tests
and benchmarks to tell the moment a node forwards a service. The frame
carries the probe mark in its XDP metadata (abi.PROBE_MARK), so the
program judges it like any other but counts nothing: probes never show in
the counters, the metrics or Octavia's statistics.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

from xdsr.dataplane import abi
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane.loader import prog_pin_name
from xdsr.dataplane.model import GENEVE_PORT, PROTOCOLS, VXLAN_PORT
from xdsr.dataplane.netns import link
from xdsr.model import checks
from xdsr.net.frames import ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, checksum, ethernet, mac_bytes, mac_str, pseudo_header

_PROBE_SRC_MAC = mac_bytes("02:00:00:00:00:fe")
# struct xdp_md as BPF_PROG_TEST_RUN takes it: data, data_end, data_meta,
# ingress_ifindex, rx_queue_index, egress_ifindex. data is where the frame
# starts after the metadata.
_XDP_MD = struct.Struct("=6I")
_META = struct.pack("=I", abi.PROBE_MARK)


@dataclass(frozen=True)
class ProbeResult:
    verdict: str  # XDP_TX, XDP_PASS, XDP_DROP
    backend_mac: str | None = None  # for XDP_TX: where the frame went (behind a tunnel: the inner MAC)
    backend_vlan: int | None = None
    vni: int | None = None  # behind a tunnel: the VNI and endpoint it went to
    vtep: str | None = None

    @property
    def forwarded(self) -> bool:
        return self.verdict == "XDP_TX"


def _l4(protocol: str, src: bytes, dst: bytes, sport: int, port: int) -> bytes:
    proto = PROTOCOLS[protocol]
    if protocol == "tcp":
        hdr = struct.pack("!HHIIBBHHH", sport, port, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    else:
        hdr = struct.pack("!HHHH", sport, port, 8, 0)
    csum = checksum(pseudo_header(src, dst, proto, len(hdr)) + hdr) or 0xFFFF
    off = 16 if protocol == "tcp" else 6
    return hdr[:off] + struct.pack("!H", csum) + hdr[off + 2 :]


def probe_frame(
    lbn_mac: str, vip: str, port: int, protocol: str, vlan: int, src: str | None = None, sport: int = 40000
) -> bytes:
    """A first packet of the flow (TCP SYN or UDP). ValueError, saying what
    is wrong, for an address, port, protocol or VLAN no packet can have."""
    dst = checks.ip_address(vip)
    proto = protocol.lower()
    if proto not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: xdsr forwards {' and '.join(PROTOCOLS)} only")
    for what, p in (("port", port), ("source port", sport)):
        if not 1 <= p <= 65535:
            raise ValueError(f"{what} {p} is outside 1-65535")
    checks.vlan(vlan)
    source = checks.ip_address(src) if src is not None else None
    if source is None:
        source = ipaddress.ip_address("198.51.100.1" if dst.version == 4 else "2001:db8:ffff::1")
    if source.version != dst.version:
        raise ValueError(f"source {source} and destination {dst} are of different families")
    l4 = _l4(proto, source.packed, dst.packed, sport, port)
    if dst.version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, PROTOCOLS[proto], 0, source.packed, dst.packed
        )
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        ethertype = ETH_P_IP
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(l4), PROTOCOLS[proto], 64, source.packed, dst.packed)
        ethertype = ETH_P_IPV6
    return ethernet(mac_bytes(lbn_mac), _PROBE_SRC_MAC, ethertype, vlan or None) + ip + l4


_VXLAN_I = 0x08
_TEB = 0x6558
_PEER4, _PEER6 = ipaddress.ip_address("192.0.2.254"), ipaddress.ip_address("2001:db8:ffff:ffff::fe")


def encapsulate(frame: bytes, kind: str, vni: int, vtep: str, vlan: int = 0) -> bytes:
    """frame (an untagged probe_frame) as a tunnel endpoint sends it to this
    node's endpoint vtep in a VXLAN or Geneve frame of VNI vni, on the
    underlay's VLAN vlan. ValueError for what no frame can have."""
    if kind not in ("vxlan", "geneve"):
        raise ValueError(f"segment type {kind!r}: vxlan or geneve")
    checks.vni(vni)
    checks.vlan(vlan)
    dst = checks.unicast_address(vtep, "a tunnel endpoint")
    src = _PEER4 if dst.version == 4 else _PEER6
    if kind == "vxlan":
        tun = struct.pack("!BBHI", _VXLAN_I, 0, 0, vni << 8)
        port = VXLAN_PORT
    else:
        tun = struct.pack("!BBHI", 0, 0, _TEB, vni << 8)
        port = GENEVE_PORT
    # The outer UDP checksum is left 0: allowed over IPv4, and the program
    # only updates one that is set.
    payload = tun + frame
    udp = struct.pack("!HHHH", 49152, port, 8 + len(payload), 0) + payload
    if dst.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src.packed, dst.packed)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        ethertype = ETH_P_IP
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(udp), 17, 64, src.packed, dst.packed)
        ethertype = ETH_P_IPV6
    return ethernet(frame[:6], _PROBE_SRC_MAC, ethertype, vlan or None) + ip + udp


def _tunnel_result(name: str, out: bytes) -> ProbeResult | None:
    """The backend behind a tunnel, if out is a re-encapsulated frame."""
    l3 = 18 if struct.unpack("!H", out[12:14])[0] == ETH_P_8021Q else 14
    ethertype = struct.unpack("!H", out[l3 - 2 : l3])[0]
    if ethertype == ETH_P_IP and out[l3 + 9] == 17:
        vtep, udp = str(ipaddress.IPv4Address(out[l3 + 16 : l3 + 20])), l3 + (out[l3] & 0xF) * 4
    elif ethertype == ETH_P_IPV6 and out[l3 + 6] == 17:
        vtep, udp = str(ipaddress.IPv6Address(out[l3 + 24 : l3 + 40])), l3 + 40
    else:
        return None
    dport = struct.unpack("!H", out[udp + 2 : udp + 4])[0]
    if dport not in (VXLAN_PORT, GENEVE_PORT):
        return None
    tun = udp + 8
    inner = tun + 8 + ((out[tun] & 0x3F) * 4 if dport == GENEVE_PORT else 0)
    vni = int.from_bytes(out[tun + 4 : tun + 7], "big")
    return ProbeResult(name, mac_str(out[inner : inner + 6]), 0, vni, vtep)


def run_probe(prog: bpf.Program, frame: bytes, tunneled: bool = False) -> ProbeResult:
    """What prog does with frame; tunneled: frame is encapsulate()'s, and
    the result names the backend behind the tunnel it went to."""
    data = _META + frame
    ctx = _XDP_MD.pack(len(_META), len(data), 0, 0, 0, 0)
    verdict, out, _ = prog.test_run(data, ctx=ctx)
    name = bpf.XDP_ACTION_NAMES.get(verdict, str(verdict))
    if verdict != bpf.XDP_TX:
        return ProbeResult(name)
    out = out[len(_META) :]  # the metadata moves with the frame's start
    if tunneled and (behind := _tunnel_result(name, out)) is not None:
        return behind
    tagged = struct.unpack("!H", out[12:14])[0] == ETH_P_8021Q
    vlan = struct.unpack("!H", out[14:16])[0] & 0x0FFF if tagged else 0
    return ProbeResult(name, mac_str(out[:6]), vlan)


def attached_program(pin_dir: str | Path, ifname: str, netns: str | None = None) -> tuple[bpf.Program, str]:
    """The program xdsr attached to ifname (from its pin) and the interface's MAC."""
    return bpf.Program.from_pin(str(Path(pin_dir) / prog_pin_name(ifname, netns))), link(ifname, netns).mac
