"""End to end in network namespaces: real TCP and UDP from clients through a
router and a switch to the LBN, whose XDP program sends each flow to a
backend on a tenant VLAN; the backends answer the clients directly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import needs_root
from xdsr.demo.fabric_state import dataplane_config
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric

pytestmark = needs_root

VIP = "203.0.113.10"  # both tenants use it, and the same backend addresses


def xdsr(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "xdsr.cli", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"xdsr {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fabric, Path]]:
    from tests.conftest import private_pin_dir

    spec = FabricSpec(
        n_lbns=1,
        ipv6=True,
        prefix="xdp2e",
        tenants=(
            TenantSpec(name="a", frontend_vid=10, backend_vid=100, n_backends=4, vip=VIP),
            TenantSpec(name="b", frontend_vid=20, backend_vid=200, n_backends=2, vip=VIP),
        ),
    )
    with build_fabric(spec) as fab, private_pin_dir() as pin:
        ns, ifname, _ = fab.lbn_trunk(0)
        xdsr("dp", "attach", ifname, "--netns", ns, "--pin-dir", str(pin))
        cfg = tmp_path_factory.mktemp("e2e") / "services.yaml"
        cfg.write_text(yaml.safe_dump(dataplane_config(fab)))
        xdsr("dp", "apply", str(cfg), "--pin-dir", str(pin))
        try:
            yield fab, pin
        finally:
            xdsr("dp", "detach", ifname, "--netns", ns, "--pin-dir", str(pin))


def stats(pin: Path) -> dict[str, object]:
    return json.loads(xdsr("dp", "stats", "--json", "--pin-dir", str(pin)))


def test_connections_spread_over_all_backends_and_keep_theirs(fabric: tuple[Fabric, Path]) -> None:
    fab, _ = fabric
    result = fab.tcp_client("a", conns=64, interval_ms=40, duration=1.5)
    assert not result.broken, result.broken[:3]
    assert not result.switched, "a connection changed backend during its life"
    assert all(len(c.replies) >= 5 for c in result.connections)
    assert set(result.by_backend()) == {b.name for b in fab.tenant("a").backends}


def test_two_tenants_with_the_same_vip_and_addresses_stay_apart(fabric: tuple[Fabric, Path]) -> None:
    fab, _ = fabric
    a, b = fab.tenant("a"), fab.tenant("b")
    assert a.vip == b.vip and a.backends[0].ip == b.backends[0].ip
    ra = fab.tcp_client("a", conns=64, interval_ms=50, duration=0.5)
    rb = fab.tcp_client("b", conns=64, interval_ms=50, duration=0.5)
    assert ra.all_ok and rb.all_ok
    assert set(rb.by_backend()) == {x.name for x in b.backends}
    assert set(ra.by_backend()) <= {x.name for x in a.backends}


def test_udp_and_ipv6(fabric: tuple[Fabric, Path]) -> None:
    fab, _ = fabric
    udp = fab.udp_client("a", flows=200)
    assert not udp.unanswered
    assert set(udp.by_backend()) == {b.name for b in fab.tenant("a").backends}
    tcp6 = fab.tcp_client("b", ipv6=True, conns=64, interval_ms=50, duration=0.5)
    assert tcp6.all_ok
    assert set(tcp6.by_backend()) == {b.name for b in fab.tenant("b").backends}
    udp6 = fab.udp_client("a", ipv6=True, flows=100)
    assert not udp6.unanswered


def _iptables_count(fab: Fabric, ns: str, chain_rule: list[str]) -> int:
    out = fab.lab.output(ns, ["iptables", "-w", "-t", "filter", "-L", "FORWARD", "-v", "-x", "-n"])
    comment = chain_rule[-1]
    for line in out.splitlines():
        if comment in line:
            return int(line.split()[0])
    raise AssertionError(f"rule {comment} not found:\n{out}")


def test_replies_bypass_the_lbn(fabric: tuple[Fabric, Path]) -> None:
    """Count, on tenant a's router, requests leaving toward the LBN and
    replies coming back: every reply comes in from the backend VLAN, none
    from the LBN side, and the LBN forwarded exactly the requests."""
    fab, pin = fabric
    t = fab.tenant("a")
    rules = {
        "to-lbn": ["-o", t.router_frontend_if, "-d", VIP, "-p", "tcp", "--dport", str(t.tcp_port)],
        "from-lbn-side": ["-i", t.router_frontend_if, "-s", VIP, "-p", "tcp", "--sport", str(t.tcp_port)],
        "from-backends": ["-i", t.router_backend_if, "-s", VIP, "-p", "tcp", "--sport", str(t.tcp_port)],
    }
    for name, match in rules.items():
        fab.lab.run(t.router_ns, ["iptables", "-w", "-I", "FORWARD", *match, "-m", "comment", "--comment", name])
    svc = f"{VIP}:{t.tcp_port}/tcp vlan {t.frontend_vid}"
    before = {s["service"]: s["packets"] for s in stats(pin)["services"]}  # type: ignore[index]
    result = fab.tcp_client("a", conns=16, interval_ms=50, duration=0.5)
    assert result.all_ok
    after = {s["service"]: s["packets"] for s in stats(pin)["services"]}  # type: ignore[index]
    requests = _iptables_count(fab, t.router_ns, ["to-lbn"])
    assert requests > 16 * 5
    assert after[svc] - before[svc] == requests
    assert _iptables_count(fab, t.router_ns, ["from-backends"]) > 16 * 5
    assert _iptables_count(fab, t.router_ns, ["from-lbn-side"]) == 0
