"""Path-MTU discovery for the backends' replies, end to end in network
namespaces: the router's link to the client has a smaller MTU than the
backends', so the router answers a backend's full-size reply with ICMP
"fragmentation needed" (IPv6: "packet too big") addressed to the VIP. The
VIP routes to the LBN, whose program must steer the error to the backend
that sent the reply; otherwise the download stalls (a PMTU black hole)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import needs_root, private_pin_dir
from xdsr.demo.fabric_state import dataplane_config
from xdsr.lab import Fabric, FabricSpec, TenantSpec, build_fabric
from xdsr.lab.topology import ROUTER_CLIENT_IF
from xdsr.lab.wait import wait_until

pytestmark = needs_root

SIZE = 200_000  # bytes each backend sends per connection: many full-size segments
SMALL_MTU = 1280

# Sends SIZE bytes to whoever connects; dual stack, so one serves both VIPs.
SERVER = f"""
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 80))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"x" * {SIZE})
    c.close()
"""

# Downloads from the VIP; prints how many bytes arrived before EOF or the timeout.
CLIENT = """
import socket, sys
vip, timeout = sys.argv[1], float(sys.argv[2])
c = socket.create_connection((vip, 80), timeout=timeout)
n = 0
try:
    while chunk := c.recv(65536):
        n += len(chunk)
except TimeoutError:
    pass
print(n)
"""


def xdsr(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "xdsr.cli", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"xdsr {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fabric, Path]]:
    spec = FabricSpec(
        n_lbns=1,
        ipv6=True,
        prefix="xpmtu",
        echo_servers=False,
        tenants=(TenantSpec(name="a", frontend_vid=10, backend_vid=100, n_backends=3),),
    )
    with build_fabric(spec) as fab, private_pin_dir() as pin:
        ns, ifname, _ = fab.lbn_trunk(0)
        xdsr("dp", "attach", ifname, "--netns", ns, "--pin-dir", str(pin))
        cfg = tmp_path_factory.mktemp("pmtu") / "services.yaml"
        cfg.write_text(yaml.safe_dump(dataplane_config(fab)))
        xdsr("dp", "apply", str(cfg), "--pin-dir", str(pin))
        try:
            for b in fab.tenant("a").backends:
                server = fab.lab.popen(b.netns, [sys.executable, "-c", SERVER])
                assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            yield fab, pin
        finally:
            xdsr("dp", "detach", ifname, "--netns", ns, "--pin-dir", str(pin))


def _download(fab: Fabric, vip: str, timeout: float = 3.0) -> int:
    t = fab.tenant("a")
    out = fab.lab.output(t.client_ns, [sys.executable, "-c", CLIENT, vip, str(timeout)], timeout=timeout + 30)
    return int(out.strip())


def _icmp_errors_steered(pin: Path) -> int:
    reasons = json.loads(xdsr("dp", "stats", "--json", "--pin-dir", str(pin)))["reasons"]
    return int(reasons["icmp_error"]["packets"])


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_backends_learn_the_path_mtu_through_the_lbn(fabric: tuple[Fabric, Path], family: str) -> None:
    fab, pin = fabric
    t = fab.tenant("a")
    vip = t.vip if family == "ipv4" else t.vip6
    assert vip is not None
    fab.lab.run(t.router_ns, ["ip", "link", "set", ROUTER_CLIENT_IF, "mtu", "1500"])
    assert _download(fab, vip) == SIZE  # the path works at full size

    fab.lab.run(t.router_ns, ["ip", "link", "set", ROUTER_CLIENT_IF, "mtu", str(SMALL_MTU)])
    steered = _icmp_errors_steered(pin)
    # Each connection comes from a new port, so it may reach another backend,
    # which must learn the path MTU for itself.
    for _ in range(4):
        assert _download(fab, vip) == SIZE, "the download stalled: the backend never learnt the path MTU"
    assert _icmp_errors_steered(pin) > steered

    # The backends now hold the smaller path MTU toward the client.
    client = t.client_ip if family == "ipv4" else t.client_ip6
    assert client is not None

    def learnt() -> list[str]:
        routes = [fab.lab.output(b.netns, ["ip", "route", "get", client, "from", vip]) for b in t.backends]
        return [r for r in routes if f"mtu {SMALL_MTU}" in r]

    assert wait_until(learnt, timeout=5.0, what="a backend with the path MTU cached")
