"""Micro-benchmark of a new or restarted node taking a whole group (issue 10):
one agent, a fresh set of real maps (no program attached), the operator's
full state of N load balancers x M members PUT through the agent's real HTTP
API in process, until applied. Process CPU per stage, min/median/max of R
runs, each on new maps and a new Agent (a restarted node has neither).

    PYTHONPATH=. .venv/bin/python scripts/bench_resync.py [N] [MEMBERS] [RUNS]
    # another tree (e.g. main), the same script:
    PYTHONPATH=/work/main/src:. .venv/bin/python scripts/bench_resync.py 4095 10 5

Stages: the body's parse and pydantic validation plus HTTP (the request's
CPU less Agent.put's), the services' checks (rules.validate), building the
services (Agent._build), the Maglev tables (tables.maglev_slots_many) and
the rest of the apply (state.apply less the tables); and, across them, the
cyclic garbage collector's runs during the request. Needs root (it creates
BPF maps); the maps are pinned under /sys/fs/bpf and removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx

from xdsr.agent import core, rules
from xdsr.agent.api import create_app
from xdsr.agent.core import Agent, AgentConfig
from xdsr.dataplane import tables
from xdsr.dataplane.loader import Dataplane, remove_pins
from xdsr.maglev import stable_table_size
from xdsr.model.agent import DesiredState, RuleBackend, RuleService, Segment
from xdsr.operator.agents import split


class NoResolver:
    """Every member comes with its MAC: nothing to resolve."""

    async def resolve(self, keys: Any, timeout: float = 0.5) -> dict[Any, str]:
        return {}

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def full_state(n: int, members: int) -> DesiredState:
    """What the operator sends a new node: its compile's services (ids are
    UUIDs, each member with id, address, MAC and VLAN; the table size set)."""
    services = []
    for i in range(n):
        backends = [
            RuleBackend.model_construct(
                id=str(uuid.UUID(int=(i << 16) + j + 1)),
                address=f"10.{64 + (i >> 10)}.{(i >> 2) & 255}.{((i & 3) << 6) + j + 1}",
                mac=f"02:cb:{(i >> 8) & 255:02x}:{i & 255:02x}:00:{j:02x}",
                vlan=100,
                weight=1,
                monitor_address=None,
                monitor_port=None,
                vni=None,
                vtep=None,
            )
            for j in range(members)
        ]
        services.append(
            RuleService.model_construct(
                id=f"{uuid.UUID(int=(1 << 64) + i)}/{uuid.UUID(int=(2 << 64) + i)}",
                vip=f"198.20.{i >> 8}.{i & 255}",
                port=80,
                protocol="tcp",
                segment=Segment(type="vlan", id=10),
                table_size=stable_table_size(None, members),
                backends=backends,
                health=None,
            )
        )
    return DesiredState.model_construct(
        generation=7, epoch="bench", base=None, changes={}, part=0, parts=1, services=services
    )


class Stages:
    """Process CPU spent inside some functions, by name."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        fn = getattr(owner, attr)
        if asyncio.iscoroutinefunction(fn):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                t0 = time.process_time()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.cpu[name] += time.process_time() - t0

            setattr(owner, attr, timed_async)
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[name] += time.process_time() - t0

        setattr(owner, attr, timed)


async def one_run(
    bodies: list[bytes], n: int, collected: dict[int, list[float]]
) -> tuple[float, float, dict[int, list[float]]]:
    pin = f"/sys/fs/bpf/xdsr-bench-resync-{os.getpid()}"
    remove_pins(pin)
    try:
        dp = Dataplane.create_or_open(pin, n + 1)
    except BaseException:
        remove_pins(pin)  # the directory it made before failing
        raise
    agent = Agent(AgentConfig(name="bench", iface="none"), dp, NoResolver())  # type: ignore[arg-type]
    try:
        agent.adopt()

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> Any:
            yield

        token = "t" * 20
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(agent, token.encode(), lifespan)),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            base_url="http://agent",
            timeout=600,
        ) as http:
            gc.collect()
            collected.clear()
            c0, t0 = time.process_time(), time.perf_counter()
            for body in bodies:
                r = await http.put("/v1/state", content=body)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            during = {g: list(ts) for g, ts in collected.items()}
            assert r.status_code == 200, r.text[:500]
            assert r.json()["generation"] == 7 and len(agent.installed) == n, "not applied"
    finally:
        await agent.stop()
        remove_pins(pin)
    return cpu, wall, during


def spread(xs: list[float]) -> str:
    return f"{min(xs) * 1000:7.0f} {statistics.median(xs) * 1000:7.0f} {max(xs) * 1000:7.0f}"


async def main(n: int, members: int, runs: int, profile: bool = False) -> None:
    gc.set_threshold(10_000, *gc.get_threshold()[1:])  # as the agent runs (agent/server.py)
    bodies = split(full_state(n, members))
    gc.freeze()
    stages = Stages()
    collected: dict[int, list[float]] = defaultdict(list)
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.process_time())
        elif started:
            collected[info["generation"]].append(time.process_time() - started.pop())

    gc.callbacks.append(on_gc)
    stages.wrap(Agent, "put", "put")
    stages.wrap(rules, "validate", "validate")
    stages.wrap(Agent, "_build", "build")
    stages.wrap(tables, "maglev_slots_many", "maglev")
    stages.wrap(core, "apply", "apply")
    rows: dict[str, list[float]] = defaultdict(list)
    if profile:
        import cProfile
        import pstats

        # Everything on this thread, where the profiler sees it.
        core._OFF_LOOP = 1 << 30

        async def inline(self: Agent, fn: Callable[..., Any], *args: object) -> Any:
            return fn(*args)

        Agent._dp = inline  # type: ignore[method-assign]
        prof = cProfile.Profile()
        prof.enable()
        await one_run(bodies, n, collected)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(40)
        return
    for _ in range(runs):
        stages.cpu.clear()
        cpu, wall, during = await one_run(bodies, n, collected)
        s = stages.cpu
        rows["wall"].append(wall)
        rows["whole request (CPU)"].append(cpu)
        rows["  parse + HTTP"].append(cpu - s["put"])
        rows["  rules.validate"].append(s["validate"])
        rows["  build services"].append(s["build"])
        rows["  Maglev tables"].append(s["maglev"])
        rows["  apply less tables"].append(s["apply"] - s["maglev"])
        rows["  the rest of put"].append(s["put"] - s["validate"] - s["build"] - s["apply"])
        rows["  (of all: the collector)"].append(sum(sum(ts) for ts in during.values()))
    print(f"{n} x {members}, {sum(map(len, bodies)):,} bytes in {len(bodies)} bodies; ms min/median/max of {runs}")
    for name, xs in rows.items():
        print(f"{name:24s} {spread(xs)}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--profile"]
    n, members = int(args[0]) if args else 4095, int(args[1]) if len(args) > 1 else 10
    asyncio.run(main(n, members, int(args[2]) if len(args) > 2 else 3, "--profile" in sys.argv))
