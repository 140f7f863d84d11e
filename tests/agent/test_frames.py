"""The ARP/ND frames the agent sends and the answers it accepts, checked
against scapy's dissectors; the socket filter run by a small cBPF
interpreter. No root needed."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_chksum,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from xdsr.agent import frames
from xdsr.net.frames import ETH_ZLEN, mac_bytes
from xdsr.net.sockfilter import sock_fprog

MAC = "02:1b:00:00:00:01"
MACB = mac_bytes(MAC)
BACKEND_MAC = "02:1b:02:00:00:07"


def test_arp_probe_is_rfc5227() -> None:
    raw = frames.arp_probe(MACB, 100, ipaddress.IPv4Address("10.1.0.11"))
    assert len(raw) == ETH_ZLEN
    p = Ether(raw)
    assert p.dst == "ff:ff:ff:ff:ff:ff" and p.src == MAC
    assert p[Dot1Q].vlan == 100 and p[Dot1Q].type == 0x0806
    arp = p[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (1, MAC, "0.0.0.0", "00:00:00:00:00:00", "10.1.0.11")
    assert Dot1Q not in Ether(frames.arp_probe(MACB, 0, ipaddress.IPv4Address("10.1.0.11")))


def test_neighbor_solicitation_comes_from_our_link_local_address() -> None:
    target = ipaddress.IPv6Address("fd00:1::c")
    p = Ether(frames.neighbor_solicitation(MACB, 200, target))
    assert p.dst == "33:33:ff:00:00:0c" and p[Dot1Q].vlan == 200
    ip6 = p[IPv6]
    assert ip6.src == "fe80::1b:ff:fe00:1" == str(frames.link_local(MACB))
    assert ip6.dst == "ff02::1:ff00:c" and ip6.hlim == 255
    ns = p[ICMPv6ND_NS]
    assert ns.tgt == str(target) and p[ICMPv6NDOptSrcLLAddr].lladdr == MAC
    sent = ns.cksum
    del ns.cksum
    assert Ether(bytes(p))[ICMPv6ND_NS].cksum == sent  # scapy recomputes the same checksum


def test_a_dad_probe_has_no_source_link_layer_option() -> None:
    """RFC 4861 4.3: an NS from '::' must not carry one (only tests send it)."""
    p = Ether(
        frames.neighbor_solicitation(MACB, 0, ipaddress.IPv6Address("fd00:1::c"), source=ipaddress.IPv6Address("::"))
    )
    assert p[IPv6].src == "::" and ICMPv6NDOptSrcLLAddr not in p


def _na(target: str, tagged_vid: int | None = None, lladdr: str | None = BACKEND_MAC, hlim: int = 255) -> bytes:
    l2 = Ether(src=BACKEND_MAC, dst=MAC)
    if tagged_vid is not None:
        l2 = l2 / Dot1Q(vlan=tagged_vid)
    na = ICMPv6ND_NA(tgt=target, R=0, S=1, O=1)
    if lladdr:
        na = na / ICMPv6NDOptDstLLAddr(lladdr=lladdr)
    return bytes(l2 / IPv6(src=target, dst="fe80::1b:ff:fe00:1", hlim=hlim) / na)


def _arp_reply(ip: str, mac: str = BACKEND_MAC, op: int = 2) -> bytes:
    return bytes(Ether(src=mac, dst=MAC) / ARP(op=op, hwsrc=mac, psrc=ip, hwdst=MAC, pdst="0.0.0.0"))


def test_answers_are_parsed_with_the_vlan_from_auxdata_or_the_frame() -> None:
    v6 = ipaddress.IPv6Address("fd00:1::c")
    assert frames.parse_reply(_arp_reply("10.1.0.11"), vid=100) == frames.Reply(
        100, ipaddress.IPv4Address("10.1.0.11"), BACKEND_MAC
    )
    assert frames.parse_reply(_na(str(v6)), vid=100) == frames.Reply(100, v6, BACKEND_MAC)
    assert frames.parse_reply(_na(str(v6), tagged_vid=7)) == frames.Reply(7, v6, BACKEND_MAC)
    # Without a target link-layer option, the sender's MAC.
    assert frames.parse_reply(_na(str(v6), lladdr=None)) == frames.Reply(0, v6, BACKEND_MAC)
    # The option wins over the Ethernet source (a proxy may send it).
    assert frames.parse_reply(_na(str(v6), lladdr="02:00:00:00:00:42")).mac == "02:00:00:00:00:42"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "frame",
    [
        _arp_reply("10.1.0.11", op=1),  # a request, not a reply
        _arp_reply("10.1.0.11", mac="ff:ff:ff:ff:ff:ff"),
        _arp_reply("0.0.0.0"),
        _na("fd00:1::c", hlim=64),  # not from on-link
        _na("ff02::1"),
        _na("fd00:1::c", lladdr="01:00:5e:00:00:01"),
        _na("fd00:1::c")[:-3],  # truncated
        b"\x00" * 10,
    ],
    ids=["arp-request", "arp-bcast-mac", "arp-zero-ip", "na-hop-limit", "na-mcast", "na-mcast-mac", "na-trunc", "runt"],
)
def test_rejects_what_is_not_a_valid_answer(frame: bytes) -> None:
    assert frames.parse_reply(frame) is None


def test_checksum_is_verified_unless_the_kernel_says_it_is_partial() -> None:
    raw = bytearray(_na("fd00:1::c"))
    raw[14 + 40 + 2] ^= 0xFF
    assert frames.parse_reply(bytes(raw)) is None
    assert frames.parse_reply(bytes(raw), verify_checksum=False) is not None


def test_scapy_agrees_on_the_checksum_helper() -> None:
    p = Ether(frames.neighbor_solicitation(MACB, 0, ipaddress.IPv6Address("fd00:1::c")))
    payload = bytes(p[ICMPv6ND_NS])
    assert in6_chksum(58, p[IPv6], payload) == 0  # a correct checksum sums to zero


def _run_cbpf(prog: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """The four opcodes the filter uses, as the kernel runs them (an
    out-of-bounds load rejects the packet)."""
    a = pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        if code in (0x28, 0x30):
            size = 2 if code == 0x28 else 1
            if k + size > len(pkt):
                return 0
            a = int.from_bytes(pkt[k : k + size], "big")
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1


def check_jumps(prog: list[tuple[int, int, int, int]]) -> None:
    """The kernel refuses a program whose jumps do not fit or leave it."""
    for pc, (code, jt, jf, _) in enumerate(prog):
        assert 0 <= jt < 256 and 0 <= jf < 256
        if code == 0x15:
            assert pc + 1 + max(jt, jf) < len(prog)


def test_socket_filter_keeps_only_answers() -> None:
    prog = frames.reply_filter()
    check_jumps(prog)
    tagged_na = _na("fd00:1::c", tagged_vid=100)
    tagged_arp = bytes(Ether(src=BACKEND_MAC, dst=MAC) / Dot1Q(vlan=100) / ARP(op=2, psrc="10.1.0.11"))
    accepted = [_arp_reply("10.1.0.11"), _na("fd00:1::c"), tagged_na, tagged_arp]
    rejected = [
        _arp_reply("10.1.0.11", op=1),
        frames.arp_probe(MACB, 100, ipaddress.IPv4Address("10.1.0.11")),
        frames.neighbor_solicitation(MACB, 100, ipaddress.IPv6Address("fd00:1::c")),
        frames.neighbor_solicitation(MACB, 0, ipaddress.IPv6Address("fd00:1::c")),
        bytes(Ether(dst=MAC) / IPv6(dst="fd00::1") / (b"x" * 40)),
        bytes(Ether(dst=MAC, type=0x0800) / (b"\x45" + b"\0" * 40)),
    ]
    assert [_run_cbpf(prog, p) > 0 for p in accepted] == [True] * len(accepted)
    assert [_run_cbpf(prog, p) > 0 for p in rejected] == [False] * len(rejected)
    fprog, buf = sock_fprog(prog)
    assert len(buf) == 8 * len(prog) and len(fprog) in (8, 16)
