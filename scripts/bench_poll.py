"""Micro-benchmark of one node poll at scale (issue 10): the operator's CPU
to parse and merge GET /v1/state whole (every report, as every poll did)
and with ?since= after one member change; and BGP's what-to-announce after
an apply, old (every service) and new (counted on apply).

    PYTHONPATH=. .venv/bin/python scripts/bench_poll.py [N_LBS] [MEMBERS]

A real Agent on an in-memory kernel (the fake of tests/agent/test_core.py),
its real HTTP API in process; times are process CPU, min/median/max of 7."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from typing import Any

import httpx
from tests.agent.test_core import FakeKernel, FakeResolver, make_agent

from xdsr.agent import core, drift
from xdsr.agent.api import create_app
from xdsr.dataplane.state import CounterValue, Stats
from xdsr.model.agent import AgentState, DesiredState
from xdsr.operator.nodes import NodeDriver
from xdsr.operator.view import Node


def lb(i: int, members: int) -> dict[str, Any]:
    return {
        "id": f"lb{i}/l",
        "vip": f"10.{(i >> 8) & 255}.{i & 255}.1",
        "port": 80,
        "protocol": "tcp",
        "backends": [
            {"id": f"lb{i}-m{j}", "mac": f"02:00:{(i >> 8) & 255:02x}:{i & 255:02x}:00:{j:02x}", "vlan": 100}
            for j in range(members)
        ],
    }


def cpu(fn: Any, n: int = 7) -> str:
    got = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        got.append((time.process_time() - t0) * 1000)
    return f"{min(got):.2f}/{statistics.median(got):.2f}/{max(got):.2f} ms"


async def main(n: int, members: int) -> None:
    k = FakeKernel()
    k.max_services = n + 1
    core.apply, core.apply_changes, core.installed, core.read_stats = (
        k.apply,
        k.apply_changes,
        k.installed,
        k.read_stats,
    )
    drift.index_digest, drift.installed = k.digest, k.installed
    a = make_agent(k, FakeResolver())
    services = [lb(i, members) for i in range(n)]
    await a.put(DesiredState.model_validate({"generation": 1, "epoch": "e", "services": services}))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> Any:
        yield

    token = "t" * 20
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(a, token.encode(), lifespan)),
        headers={"Authorization": f"Bearer {token}"},
        base_url="http://agent",
    )
    whole = (await http.get("/v1/state")).content
    at = AgentState.model_validate_json(whole)
    changed = lb(7, members + 1)
    await a.put(DesiredState.model_validate({"generation": 2, "base": 1, "epoch": "e", "changes": {"lb7": [changed]}}))
    since = (await http.get("/v1/state", params={"since": at.seq, "instance": at.instance})).content
    assert AgentState.model_validate_json(since).changed == ["lb7"]

    # Under traffic every counter moves between two polls: a whole read
    # finds every load balancer's reports changed (each status computed again).
    k.read_stats = lambda dp, inst: Stats({}, {s.service.key: CounterValue(20, 2000) for s in inst})  # type: ignore[method-assign]
    core.read_stats = k.read_stats
    moved = (await http.get("/v1/state")).content
    base = Node("n")
    NodeDriver._take_reports(None, base, AgentState.model_validate_json(whole), None)  # type: ignore[arg-type]

    def take(body: bytes) -> set[str] | None:
        state = AgentState.model_validate_json(body)
        node = Node("n", by_lb=dict(base.by_lb))  # the reports of the last poll
        return NodeDriver._take_reports(None, node, state, set(state.changed) if state.partial else None)  # type: ignore[arg-type]

    async def agent_cpu(**kw: Any) -> str:
        got = []
        for _ in range(7):
            t0 = time.process_time()
            await a.state(**kw)
            got.append((time.process_time() - t0) * 1000)
        return f"{min(got):.2f}/{statistics.median(got):.2f}/{max(got):.2f} ms"

    print(f"{n} load balancers x {members} members; process CPU min/median/max of 7")
    print(
        f"operator, whole poll ({len(moved)} B): {cpu(lambda: take(moved))}, statuses dirty: {len(take(moved) or ())}"
    )
    print(
        f"operator, since poll ({len(since)} B): {cpu(lambda: take(since))}, statuses dirty: {len(take(since) or ())}"
    )
    print(f"agent, whole answer: {await agent_cpu()}")
    print(f"agent, since answer: {await agent_cpu(since=(at.instance, a.reports.seq - 1))}")

    def old_bgp() -> None:  # bgp.wanted before: views rebuilt after each apply, every service read
        a._version += 1
        installed = {s.service.key for s in a.installed_cache}
        {(b.service.key.vip, b.service.key.seg_id) for b in a.built if b.service.key in installed}

    print(f"bgp held VIPs after an apply, old:       {cpu(old_bgp)}")
    print(f"bgp held VIPs after a member change, new: {cpu(lambda: a.vips.version)} (version unchanged: no pass)")
    await http.aclose()
    await a.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 4095, int(sys.argv[2]) if len(sys.argv) > 2 else 10))
