"""Jumbo frames: the program takes each frame in one buffer (it is not
multi-buffer capable), so `xdsr dp attach` refuses a trunk whose MTU is
above what it handles, says so, and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import needs_root, private_pin_dir
from xdsr.dataplane.loader import MAX_NATIVE_MTU, xdp_prog_id
from xdsr.dataplane.netns import link
from xdsr.lab import Lab

pytestmark = needs_root


def xdsr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xdsr.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def trunk() -> Iterator[tuple[Lab, str, str]]:
    with Lab("xjumbo") as lab:
        ns = lab.add_netns("lbn", ipv6=False)
        peer = lab.add_netns("sw", ipv6=False)
        lab.add_veth(ns, "trunk0", peer, "port0", mtu=9000)
        yield lab, ns, peer


def _set_mtu(lab: Lab, ns: str, ifname: str, mtu: int) -> None:
    lab.run(ns, ["ip", "link", "set", ifname, "mtu", str(mtu)])


def test_attach_refuses_a_jumbo_trunk_and_leaves_nothing(trunk: tuple[Lab, str, str]) -> None:
    lab, ns, peer = trunk
    with private_pin_dir() as pin:
        assert not pin.exists()
        proc = xdsr("dp", "attach", "trunk0", "--netns", ns, "--pin-dir", str(pin))
        assert proc.returncode == 1
        assert "trunk0 has MTU 9000" in proc.stderr and f"above {MAX_NATIVE_MTU}" in proc.stderr
        assert not pin.exists(), "a refused attach left pins behind"
        assert xdp_prog_id(link("trunk0", ns).index, netns=ns) == 0

        # At the limit the program takes it, but a veth also refuses XDP
        # while its peer's MTU is larger: the kernel's refusal leaves
        # nothing behind either.
        _set_mtu(lab, ns, "trunk0", MAX_NATIVE_MTU)
        proc = xdsr("dp", "attach", "trunk0", "--netns", ns, "--pin-dir", str(pin))
        assert proc.returncode == 1 and "Peer MTU is too large" in proc.stderr
        assert not pin.exists(), "a refused attach left pins behind"

        _set_mtu(lab, peer, "port0", MAX_NATIVE_MTU)
        proc = xdsr("dp", "attach", "trunk0", "--netns", ns, "--pin-dir", str(pin))
        assert proc.returncode == 0, proc.stderr
        assert xdp_prog_id(link("trunk0", ns).index, netns=ns) != 0
        assert xdsr("dp", "detach", "trunk0", "--netns", ns, "--pin-dir", str(pin)).returncode == 0
