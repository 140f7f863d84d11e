"""Parts of the lab that need no root: waiting, result parsing, the tools'
command lines, the fabric's addressing plan."""

from __future__ import annotations

import time

import pytest

from xdsr.lab import LabError, TcpResult, UdpResult, wait_until
from xdsr.lab.client import build_parser
from xdsr.lab.fabric import FabricSpec, TenantSpec, _resolve_tenant

from .conftest import IS_ROOT


def test_wait_until_returns_the_value_and_times_out() -> None:
    calls: list[int] = []

    def third_time() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert wait_until(third_time, timeout=1, interval=0.001) == 3
    t = time.monotonic()
    with pytest.raises(TimeoutError, match="never"):
        wait_until(lambda: False, timeout=0.1, interval=0.01, what="never")
    assert time.monotonic() - t < 1.0
    with pytest.raises(TimeoutError) as info:
        wait_until(lambda: 1 / 0, timeout=0.05, interval=0.01, ignore=(ZeroDivisionError,))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_tcp_result_tells_switched_and_broken_connections() -> None:
    ev = {
        "event": "result",
        "mode": "tcp",
        "target": ["10.200.0.10", 80],
        "elapsed": 1.0,
        "connections": [
            {"id": 0, "local_port": 1000, "replies": ["a", "a"], "sent": 2, "error": None, "error_after": None},
            {"id": 1, "local_port": 1001, "replies": ["b", "c"], "sent": 2, "error": None, "error_after": None},
            {"id": 2, "local_port": 1002, "replies": ["a"], "sent": 2, "error": "reset", "error_after": 0.5},
        ],
    }
    r = TcpResult.from_event(ev)
    assert [c.id for c in r.switched] == [1]
    assert [c.id for c in r.broken] == [2]
    assert r.by_backend() == {"a": 2, "b": 1}
    assert r.connections[1].backends == ("b", "c")
    assert not r.all_ok


def test_udp_result_counts_replies() -> None:
    ev = {
        "target": ["10.200.0.10", 5001],
        "elapsed": 0.1,
        "flows": [
            {"id": 0, "local_port": 1, "reply": "a", "error": None, "rtt_ms": 0.1},
            {"id": 1, "local_port": 2, "reply": None, "error": "timeout", "rtt_ms": None},
        ],
    }
    r = UdpResult.from_event(ev)
    assert len(r.answered) == 1 and len(r.unanswered) == 1
    assert r.by_backend() == {"a": 1}


def test_client_command_line() -> None:
    args = build_parser().parse_args(["tcp", "10.0.0.1", "80", "--conns", "5", "--until-signalled"])
    assert (args.mode, args.conns, args.until_signalled) == ("tcp", 5, True)
    args = build_parser().parse_args(["udp", "fd00::1", "5001", "--flows", "7"])
    assert (args.mode, args.host, args.flows) == ("udp", "fd00::1", 7)


class _Names:
    name = "xt-000000"

    def netns_name(self, role: str) -> str:
        return f"{self.name}-{role}"


def test_addressing_plan_lets_tenants_share_backend_addresses() -> None:
    spec = FabricSpec(n_lbns=3, tenants=(TenantSpec(), TenantSpec(name="blue", n_backends=2)), ipv6=True)
    a, b = (_resolve_tenant(t, ts, spec.ipv6, spec.n_lbns, _Names()) for t, ts in enumerate(spec.tenants))  # type: ignore[arg-type]
    assert a.backends[0].ip == b.backends[0].ip == "10.1.0.11"
    assert a.backends[0].mac != b.backends[0].mac
    assert (a.frontend_vid, a.backend_vid, b.frontend_vid, b.backend_vid) == (10, 100, 11, 101)
    assert a.nexthops == ("10.255.0.11", "10.255.0.12", "10.255.0.13")
    assert b.vip == "10.200.1.10" and b.vip6 == "fd00:200:1::10"
    assert [x.name for x in b.backends] == ["blue-be0", "blue-be1"]
    with pytest.raises(ValueError, match="fit"):
        _resolve_tenant(0, TenantSpec(backend_subnet="10.1.0.0/29", n_backends=3), False, 1, _Names())  # type: ignore[arg-type]


@pytest.mark.skipif(IS_ROOT, reason="checks the error a non-root user gets")
def test_require_root_says_why() -> None:
    from xdsr.lab import require_root

    with pytest.raises(LabError, match="root"):
        require_root()
