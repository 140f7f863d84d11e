"""Micro-benchmark of one node poll at scale (issue 10): bytes on the wire
and CPU per poll, whole (every report: what every poll did before) and with
?since= (what changed since the last answer): the group quiet, one member
change, and traffic on some of the services (their counters only); the
agent's read of every service's counters from a real per-CPU map, one
lookup per service (before) and one batch (after); and BGP's
what-to-announce after an apply, old (every service) and new (counted).

    PYTHONPATH=. .venv/bin/python scripts/bench_poll.py [N_LBS] [MEMBERS]
    # before: the whole reads only, with another tree's agent and operator
    PYTHONPATH=/work/main/src:/work/main .venv/bin/python scripts/bench_poll.py 4095 10 --whole-only

A real Agent on an in-memory kernel (the fake of tests/agent/test_core.py),
its real HTTP API in process; the operator's side is its parse and merge
(NodeDriver._take_reports). Times are process CPU, min/median/max of 7.
The counters read needs root (it creates a BPF map)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import statistics
import sys
import time
from typing import Any

import httpx
from tests.agent.test_core import FakeKernel, FakeResolver, make_agent

from xdsr.agent import core, drift
from xdsr.agent.api import create_app
from xdsr.dataplane import abi, libbpf
from xdsr.dataplane.state import CounterValue, Stats, _sum_percpu, _u32
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


def stats(got: list[float]) -> str:
    return f"{min(got):.2f}/{statistics.median(got):.2f}/{max(got):.2f} ms"


def cpu(fn: Any, n: int = 7) -> str:
    got = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        got.append((time.process_time() - t0) * 1000)
    return stats(got)


def counters_read(n: int) -> tuple[str, str]:
    """Every service's counters from a real per-CPU array of n entries:
    one lookup each (what read_stats did), and one batch (what it does)."""
    m = libbpf.Map.create(libbpf.BPF_MAP_TYPE_PERCPU_ARRAY, "bench_poll", 4, ctypes.sizeof(abi.Counter), n)
    try:
        single = cpu(lambda: [_sum_percpu(m.lookup(_u32(i))) for i in range(n)])
        batch = cpu(lambda: m.values_batch())
    finally:
        m.close()
    return single, batch


async def main(n: int, members: int, whole_only: bool) -> None:
    k = FakeKernel()
    k.max_services = n + 1
    traffic: dict[Any, CounterValue] = {}  # service key -> counters other than the fake's constant ones

    def read_stats(dp: Any, inst: Any) -> Stats:
        got = k.read_stats(dp, inst)
        return Stats(got.reasons, {key: traffic.get(key, c) for key, c in got.services.items()})

    core.apply, core.apply_changes, core.installed, core.read_stats = k.apply, k.apply_changes, k.installed, read_stats
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

    async def get(since: tuple[str, int] | None) -> bytes:
        params = {"since": since[1], "instance": since[0]} if since else None
        return (await http.get("/v1/state", params=params)).content

    whole = await get(None)
    at = AgentState.model_validate_json(whole)
    base = Node("n")
    NodeDriver._take_reports(NodeDriver, base, at, None)  # type: ignore[arg-type]

    def take(body: bytes) -> set[str] | None:
        state = AgentState.model_validate_json(body)
        node = Node("n", by_lb=dict(base.by_lb))  # the reports of the last poll
        return NodeDriver._take_reports(NodeDriver, node, state, set(state.changed) if state.partial else None)  # type: ignore[arg-type]

    async def agent_cpu(since: tuple[str, int] | None) -> str:
        got = []
        for _ in range(7):
            t0 = time.process_time()
            await get(since)
            got.append((time.process_time() - t0) * 1000)
        return stats(got)

    rows: list[tuple[str, int, str, str, int]] = []

    async def row(what: str, since: tuple[str, int] | None) -> None:
        body = await get(since)
        rows.append((what, len(body), await agent_cpu(since), cpu(lambda: take(body)), len(take(body) or ())))

    def all_moved() -> None:
        for i in range(n):
            traffic[a.built_by[f"lb{i}"][0].service.key] = CounterValue(30 + i, 3000 + i)

    if whole_only:  # what a tree without ?since= does at every poll (PYTHONPATH of that tree)
        await row("whole, quiet group", None)
        all_moved()
        await row(f"whole, traffic on all {n} services", None)
    else:
        since = (at.instance, at.seq)
        await row("whole, quiet group", None)
        await row("since, quiet group", since)
        active = max(1, n // 10)
        for i in range(active):  # traffic on a tenth of the services: their counters move
            traffic[a.built_by[f"lb{i}"][0].service.key] = CounterValue(20 + i, 2000 + i)
        await row(f"since, traffic on {active} services", since)
        all_moved()
        await row(f"since, traffic on all {n} services", since)
        await row(f"whole, traffic on all {n} services", None)
        traffic.clear()
        quiet_at = AgentState.model_validate_json(await get(None))
        changed = lb(7, members + 1)
        state = {"generation": 2, "base": 1, "epoch": "e", "changes": {"lb7": [changed]}}
        await a.put(DesiredState.model_validate(state))
        await row("since, one member added", (quiet_at.instance, quiet_at.seq))

    print(f"{n} load balancers x {members} members; process CPU min/median/max of 7")
    print("| poll | bytes | agent CPU (answer, HTTP in process) | operator CPU (parse, merge) | statuses dirty |")
    print("|---|---|---|---|---|")
    for what, size, agent, op, dirty in rows:
        print(f"| {what} | {size:,} | {agent} | {op} | {dirty} |")
    if whole_only:
        await http.aclose()
        await a.stop()
        return
    try:
        single, batch = counters_read(n)
        print(f"counters of {n} services from a per-CPU map: one lookup each {single}, one batch {batch}")
    except libbpf.BpfError as exc:
        print(f"counters read not measured (needs root): {exc}")

    def old_bgp() -> None:  # bgp.wanted before: views rebuilt after each apply, every service read
        a._version += 1
        installed = {s.service.key for s in a.installed_cache}
        {(b.service.key.vip, b.service.key.seg_id) for b in a.built if b.service.key in installed}

    print(f"bgp held VIPs after an apply, old: {cpu(old_bgp)}; new: no pass unless a (VIP, segment) came or went")
    await http.aclose()
    await a.stop()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--whole-only"]
    n, members = int(args[0]) if args else 4095, int(args[1]) if len(args) > 1 else 10
    asyncio.run(main(n, members, "--whole-only" in sys.argv))
