"""The checks' fast paths (IPv4 text, IPv4 unicast, normalized MACs) give
exactly what the general ones give: the same values, the same refusals."""

from __future__ import annotations

import ipaddress
import random

import pytest

from xdsr.model import checks

EDGES = [
    "10.0.0.1", "0.0.0.0", "255.255.255.255", "255.255.255.254", "127.0.0.1", "127.255.255.255", "128.0.0.1",
    "224.0.0.1", "239.255.255.255", "240.0.0.1", "223.255.255.255", "01.2.3.4", "1.2.3.04", "1.2.3.0004",
    "00.1.1.1", "256.1.1.1", "1.2.3", "1.2.3.4.5", "1..2.3", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "0x1.2.3.4",
    "1.2.3.4/32", "\uff11.2.3.4", "1.2.3.4%eth0", "+1.2.3.4", "1.2.3.-4", "1.2.3.4\x00", "", "::1", "::ffff:1.2.3.4",
    "fe80::1%eth0", "2001:db8::1",
]  # fmt: skip


def _general(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _texts() -> list[str]:
    rng = random.Random(7)
    noise = ["".join(rng.choice("0123456789.x ") for _ in range(rng.randint(1, 15))) for _ in range(20000)]
    return EDGES + noise + [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(2000)]


def test_an_address_is_parsed_as_ipaddress_parses_it() -> None:
    for text in _texts():
        want = _general(text)
        if want is None:
            with pytest.raises(ValueError):
                checks.ip_address(text)
        else:
            got = checks.ip_address(text)
            assert got == want and type(got) is type(want), text


def test_a_unicast_ipv4_address_is_judged_as_ipaddress_judges_it() -> None:
    for text in _texts():
        addr = _general(text)
        if not isinstance(addr, ipaddress.IPv4Address):
            continue
        refused = addr.is_unspecified or addr.is_multicast or addr.is_loopback or addr.packed == b"\xff" * 4
        try:
            checks.unicast_address(text)
        except ValueError:
            assert refused, text
        else:
            assert not refused, text


@pytest.mark.parametrize(
    "mac",
    [
        "02:00:00:00:00:01",
        "aa:bb:cc:dd:ee:ff",
        "AA:bb:cc:dd:ee:ff",
        "a-b-c-d-e-f",
        "02:00:00:00:00:0g",
        "02:00:00:00:00:01:",
        "02:00:00:00:0:1",
    ],
)
def test_a_mac_is_normalized_as_before(mac: str) -> None:
    def general(v: str) -> str:
        parts = v.replace("-", ":").split(":")
        if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
            raise ValueError
        return ":".join(f"{int(p, 16):02x}" for p in parts)

    try:
        want = general(mac)
    except ValueError:
        with pytest.raises(ValueError):
            checks.normalize_mac(mac)
        return
    assert checks.normalize_mac(mac) == want
