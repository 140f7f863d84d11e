"""The traffic tools against a backend with the VIP on lo (no LB): what
they report is what the end-to-end tests will rely on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from xdsr.lab import Lab, wait_until
from xdsr.lab.traffic import EchoServer, run_tcp_client, run_udp_client, start_echo, start_tcp_session

from .conftest import needs_root

pytestmark = needs_root

VIP, VIP6 = "10.200.0.10", "fd00:200::10"


@dataclass
class Pair:
    lab: Lab
    client: str
    backend: str
    echo: EchoServer


@pytest.fixture
def pair(new_lab: Callable[[], Lab]) -> Iterator[Pair]:
    """client --- backend (VIP and VIP6 on lo), routed directly: the
    backend's replies must come from the VIP for the client to take them."""
    lab = new_lab()
    c, b = lab.add_netns("c"), lab.add_netns("b", sysctls={"net.ipv4.conf.all.rp_filter": 0})
    lab.add_veth(c, "eth0", b, "eth0")
    lab.add_address(c, "eth0", "10.9.0.1/24")
    lab.add_address(b, "eth0", "10.9.0.2/24")
    lab.add_address(c, "eth0", "fd00:9::1/64")
    lab.add_address(b, "eth0", "fd00:9::2/64")
    lab.add_address(b, "lo", f"{VIP}/32")
    lab.add_address(b, "lo", f"{VIP6}/128")
    lab.set_route(c, f"{VIP}/32", via="10.9.0.2")
    lab.set_route(c, f"{VIP6}/128", via="fd00:9::2")
    yield Pair(lab, c, b, start_echo(lab, b, "be-x", tcp_port=80, udp_port=5001))


@pytest.mark.parametrize("vip", [VIP, VIP6], ids=["ipv4", "ipv6"])
def test_udp_replies_come_from_the_vip(pair: Pair, vip: str) -> None:
    # The client's sockets are connected to the VIP: a reply from any other
    # source address would be dropped by the kernel and show as a timeout.
    r = run_udp_client(pair.lab, pair.client, vip, 5001, flows=50, reply_timeout=2)
    assert len(r.answered) == 50, [f.error for f in r.unanswered]
    assert r.by_backend() == {"be-x": 50}
    assert len({f.local_port for f in r.flows}) == 50


def test_tcp_connections_report_their_backend_for_their_whole_life(pair: Pair) -> None:
    r = run_tcp_client(pair.lab, pair.client, VIP, 80, conns=50, interval_ms=20, duration=0.5)
    assert r.all_ok, r.broken
    assert len({c.local_port for c in r.connections}) == 50
    assert all(len(c.replies) >= 5 and c.backends == ("be-x",) for c in r.connections)
    assert r.target == (VIP, 80)


def test_a_session_reports_connections_broken_under_it(pair: Pair) -> None:
    s = start_tcp_session(pair.lab, pair.client, VIP6, 80, conns=5, interval_ms=20)
    assert s.ready is not None and s.ready["connected"] == 5
    assert s.broken_events() == []
    stats = pair.echo.stop()  # the server exits: every connection is closed under the client
    assert stats is not None and stats["tcp_connections"] == 5
    wait_until(lambda: len(s.broken_events()) == 5, timeout=5, what="5 broken connections reported")
    r = s.stop()
    assert len(r.broken) == 5
    assert {c.error for c in r.broken} <= {"closed", "reset"}
    assert all(c.replies and c.backends == ("be-x",) for c in r.connections)


def test_a_client_that_finds_no_server_says_so(pair: Pair) -> None:
    r = run_tcp_client(pair.lab, pair.client, VIP, 81, conns=2, duration=0.1)
    assert [c.error for c in r.connections] == ["refused", "refused"]
    udp = run_udp_client(pair.lab, pair.client, VIP, 5002, flows=3, reply_timeout=0.3)
    assert len(udp.unanswered) == 3
