"""The demos run start to finish, show what they claim, and leave nothing behind."""

from __future__ import annotations

import io

from rich.console import Console

from tests.conftest import needs_root
from xdsr.lab import lab_namespaces

pytestmark = needs_root


def test_cloud_demo() -> None:
    from xdsr.demo.cloud_demo import run

    buf = io.StringIO()
    findings = run(console=Console(file=buf, width=200), conns=30)
    text = buf.getvalue()
    assert "all 3 LB nodes forward after" in text
    assert findings["broken"] == 0 and findings["udp_unanswered"] == 0
    assert set(findings["blue"]) == {f"blue-be{i}" for i in range(4)}  # type: ignore[arg-type]
    assert set(findings["red"]) <= {f"red-be{i}" for i in range(3)}  # type: ignore[arg-type]
    # The third tenant, on VXLAN: its own backends, behind Linux VXLAN devices.
    assert set(findings["green"]) == {f"green-be{i}" for i in range(3)}  # type: ignore[arg-type]
    assert findings["router"]["replies-via-lbns"] == 0  # type: ignore[index]
    assert findings["router"]["replies-direct"] > 0  # type: ignore[index]
    assert sum(1 for n in findings["per_lbn"] if n > 0) >= 2  # type: ignore[union-attr]
    assert findings["withdraw_broken"] == 0 and findings["withdraw_switched"] == 0
    # BGP: the killed agent's node left the router's route; a drain lost nothing.
    assert "the router's FIB has 2 next hops" in text
    assert findings["drain_broken"] == 0 and findings["drain_switched"] == 0
    assert "the load balancer is DEGRADED; GET /v2/lbaas/xdsr/lbns: lbn1 drained, withholding" in text
    # A dead backend's service: out of every table, no new connection to it fails.
    assert findings["health_broken"] == 0
    assert set(findings["health_during"]) == {"blue-be0", "blue-be2", "blue-be3"}  # type: ignore[arg-type]
    assert lab_namespaces("xdsr-demo") == []


def test_dataplane_demo() -> None:
    from xdsr.demo.dataplane_demo import run

    buf = io.StringIO()
    findings = run(console=Console(file=buf, width=200), conns=30)
    assert findings["broken"] == 0
    assert set(findings["blue"]) == {f"blue-be{i}" for i in range(4)}  # type: ignore[arg-type]
    assert findings["router"]["replies-via-lbns"] == 0  # type: ignore[index]
    assert findings["withdraw_broken"] == 0 and findings["withdraw_switched"] == 0
    assert "cleaned up lab" in buf.getvalue()
    assert lab_namespaces("xdsr-demo") == []
