"""The agent's API takes a large desired state with the cyclic garbage
collector paused (agent/api.py, CollectorPause), and resumes it afterwards."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from xdsr.agent.api import CollectorPause


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


class Recorder:
    """An application that notes whether the collector runs while it handles
    a request, and can be held inside until released."""

    def __init__(self) -> None:
        self.seen: list[bool] = []
        self.release: asyncio.Event | None = None
        self.inside = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append(gc.isenabled())
        self.inside.set()
        if self.release is not None:
            await self.release.wait()


def request(method: str, path: str, length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": method, "path": path, "headers": headers}


def call(app: CollectorPause, scope: dict[str, Any]) -> Any:
    async def nothing() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def ignore(_message: Any) -> None:
        pass

    return app(scope, nothing, ignore)


def test_a_large_state_is_taken_with_the_collector_paused() -> None:
    inner = Recorder()
    app = CollectorPause(inner, min_bytes=1000)  # type: ignore[arg-type]
    gc.enable()
    asyncio.run(call(app, request("PUT", "/v1/state", 1000)))
    assert inner.seen == [False] and gc.isenabled()


@pytest.mark.parametrize(
    ("method", "path", "length"),
    [("PUT", "/v1/state", 999), ("PUT", "/v1/state", None), ("GET", "/v1/state", 5000), ("PUT", "/v1/drain", 5000)],
)
def test_anything_else_runs_with_the_collector(method: str, path: str, length: int | None) -> None:
    inner = Recorder()
    app = CollectorPause(inner, min_bytes=1000)  # type: ignore[arg-type]
    gc.enable()
    asyncio.run(call(app, request(method, path, length)))
    assert inner.seen == [True] and gc.isenabled()


def test_overlapping_states_resume_it_once_both_are_done() -> None:
    async def body() -> None:
        first, second = Recorder(), Recorder()
        first.release, second.release = asyncio.Event(), asyncio.Event()
        app = CollectorPause(first, min_bytes=10)  # type: ignore[arg-type]
        a = asyncio.create_task(call(app, request("PUT", "/v1/state", 100)))
        await first.inside.wait()
        app.app = second  # type: ignore[assignment]
        b = asyncio.create_task(call(app, request("PUT", "/v1/state", 100)))
        await second.inside.wait()
        first.release.set()
        await a
        assert not gc.isenabled()  # the second is still being taken
        second.release.set()
        await b
        assert gc.isenabled()

    gc.enable()
    asyncio.run(body())


def test_a_collector_disabled_before_stays_disabled() -> None:
    inner = Recorder()
    app = CollectorPause(inner, min_bytes=10)  # type: ignore[arg-type]
    gc.disable()
    asyncio.run(call(app, request("PUT", "/v1/state", 100)))
    assert inner.seen == [False] and not gc.isenabled()


def test_the_agents_api_takes_a_whole_group_with_the_collector_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wired into the agent's API: a full state of 2000 load balancers
    (over 1 MB) is checked and applied with the collector paused; a small
    delta is not."""
    import contextlib

    import httpx

    from tests.agent.test_core import FakeKernel, FakeResolver, kernel, make_agent  # noqa: F401
    from xdsr.agent import core, drift
    from xdsr.agent.api import PAUSE_COLLECTOR_BYTES, create_app
    from xdsr.agent.core import Agent

    k = FakeKernel()
    k.max_services = 4096
    for mod, name, fn in [
        (core, "apply", k.apply),
        (core, "apply_changes", k.apply_changes),
        (core, "installed", k.installed),
        (core, "read_stats", k.read_stats),
        (drift, "index_digest", k.digest),
        (drift, "installed", k.installed),
    ]:
        monkeypatch.setattr(mod, name, fn)
    seen: list[bool] = []
    put = Agent.put

    async def noting(self: Agent, desired: Any) -> Any:
        seen.append(gc.isenabled())
        return await put(self, desired)

    monkeypatch.setattr(Agent, "put", noting)

    def lb(i: int) -> dict[str, Any]:
        members = [
            {"id": f"lb{i}-m{j}", "mac": f"02:00:{i >> 8:02x}:{i & 255:02x}:00:{j:02x}", "vlan": 100} for j in range(10)
        ]
        return {"id": f"lb{i}/l", "vip": f"10.{i >> 8}.{i & 255}.1", "port": 80, "protocol": "tcp", "backends": members}

    full = httpx.Request(
        "PUT", "http://a", json={"generation": 1, "epoch": "e", "services": [lb(i) for i in range(2000)]}
    )
    delta = {"generation": 2, "base": 1, "epoch": "e", "changes": {"lb7": [lb(7)]}}
    assert len(full.read()) >= PAUSE_COLLECTOR_BYTES

    async def body() -> None:
        agent = make_agent(k, FakeResolver())

        @contextlib.asynccontextmanager
        async def lifespan(_app: Any) -> Any:
            yield

        token = "t" * 20
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(agent, token.encode(), lifespan)),
            headers={"Authorization": f"Bearer {token}"},
            base_url="http://agent",
        ) as http:
            r = await http.put("/v1/state", content=full.read(), headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text[:300]
            assert gc.isenabled()
            r = await http.put("/v1/state", json=delta)
            assert r.status_code == 200, r.text[:300]

    gc.enable()
    asyncio.run(body())
    assert seen == [False, True] and gc.isenabled() and len(k.services) == 2000
