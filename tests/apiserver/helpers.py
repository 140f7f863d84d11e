"""Helpers for the API server tests: the server in a thread of its own (so
that synchronous clients — httpx, openstacksdk, schemathesis — can call it),
tokens of two projects and an admin, a stand-in operator, object factories."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from xdsr.apiserver import ApiServer, Token
from xdsr.model import keys
from xdsr.model.loadbalancer import ListenerStats, LoadBalancer, LoadBalancerStatus, ObjectStatus
from xdsr.store.docs import dump, get_doc
from xdsr.store.etcd import EtcdStore

T = TypeVar("T")

TOKEN_A = "token-of-project-a"
TOKEN_B = "token-of-project-b"
TOKEN_ADMIN = "token-of-the-admin"
PROJECT_A = "project-a"
PROJECT_B = "project-b"
TOKENS = [
    Token(token=TOKEN_A, project_id=PROJECT_A),
    Token(token=TOKEN_B, project_id=PROJECT_B),
    Token(token=TOKEN_ADMIN, project_id="admin", admin=True),
]


class ServerThread:
    """An ApiServer on its own event loop in a background thread."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="apiserver", daemon=True)
        self.thread.start()
        self.store: EtcdStore | None = None
        self.server: ApiServer | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, prepare: Callable[[FastAPI], None] | None = None) -> ServerThread:
        """Start; prepare(app) runs before it serves (e.g. to add a middleware)."""

        async def start() -> None:
            self.store = EtcdStore(self.endpoint)
            self.server = ApiServer(self.store, TOKENS, port=0)
            if prepare is not None:
                prepare(self.server.app)
            await self.server.start()

        self.run(start())
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def close(self) -> None:
        async def stop() -> None:
            if self.server is not None:
                await self.server.stop()
            if self.store is not None:
                await self.store.close()

        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


def client(api: ServerThread, token: str | None = TOKEN_A) -> httpx.Client:
    headers = {"X-Auth-Token": token} if token else {}
    return httpx.Client(base_url=api.url, headers=headers, timeout=10)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def stored(endpoint: str, lb_id: str) -> LoadBalancer | None:
    """The load balancer's document as stored (not as the API shows it)."""

    async def body() -> LoadBalancer | None:
        store = EtcdStore(endpoint)
        try:
            got = await get_doc(store, keys.lb_key(lb_id), LoadBalancer)
            return got[0] if got else None
        finally:
            await store.close()

    return run(body())


async def write_status(
    store: EtcdStore,
    lb: LoadBalancer,
    provisioning: str = "ACTIVE",
    operating: str = "ONLINE",
    stats: dict[str, tuple[int, int]] | None = None,
) -> LoadBalancerStatus:
    ok = ObjectStatus(provisioning_status=provisioning, operating_status=operating)  # type: ignore[arg-type]
    st = LoadBalancerStatus(
        id=lb.id,
        observed_generation=lb.generation,
        provisioning_status=provisioning,  # type: ignore[arg-type]
        operating_status=operating,  # type: ignore[arg-type]
        listeners={li.id: ok for li in lb.listeners},
        pools={p.id: ok for p in lb.pools},
        members={m.id: ok for p in lb.pools for m in p.members},
        healthmonitors={h.id: ok for h in lb.healthmonitors},
        stats={k: ListenerStats(packets=v[0], bytes=v[1]) for k, v in (stats or {}).items()},
    )
    await store.put(keys.status_key(lb.id), dump(st))
    return st


def observe(
    endpoint: str,
    lb_id: str,
    provisioning: str = "ACTIVE",
    operating: str = "ONLINE",
    stats: dict[str, tuple[int, int]] | None = None,
) -> LoadBalancerStatus:
    """Do what the operator does once it has made the load balancer real:
    write its status with observed_generation = the document's generation."""

    async def body() -> LoadBalancerStatus:
        store = EtcdStore(endpoint)
        try:
            got = await get_doc(store, keys.lb_key(lb_id), LoadBalancer)
            assert got is not None, f"no load balancer {lb_id}"
            return await write_status(store, got[0], provisioning, operating, stats)
        finally:
            await store.close()

    return run(body())


def eventually(check: Callable[[], T], timeout: float = 5.0) -> T:
    """check() once it stops raising AssertionError (the cache follows the store by a watch)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def vip() -> str:
    """A VIP no other test uses (a VIP belongs to one load balancer per segment)."""
    n = uuid.uuid4().int
    return f"10.{n % 250 + 1}.{(n >> 8) % 250 + 1}.{(n >> 16) % 250 + 1}"


def create_lb(c: httpx.Client, **attrs: Any) -> dict[str, Any]:
    r = c.post("/v2/lbaas/loadbalancers", json={"loadbalancer": {"vip_address": vip(), **attrs}})
    assert r.status_code == 201, r.text
    return r.json()["loadbalancer"]  # type: ignore[no-any-return]


def create_listener(c: httpx.Client, lb_id: str, port: int = 80, protocol: str = "TCP", **attrs: Any) -> dict[str, Any]:
    body = {"loadbalancer_id": lb_id, "protocol": protocol, "protocol_port": port, **attrs}
    r = c.post("/v2/lbaas/listeners", json={"listener": body})
    assert r.status_code == 201, r.text
    return r.json()["listener"]  # type: ignore[no-any-return]


def create_pool(c: httpx.Client, protocol: str = "TCP", **attrs: Any) -> dict[str, Any]:
    body = {"protocol": protocol, "lb_algorithm": "ROUND_ROBIN", **attrs}
    r = c.post("/v2/lbaas/pools", json={"pool": body})
    assert r.status_code == 201, r.text
    return r.json()["pool"]  # type: ignore[no-any-return]


def create_member(c: httpx.Client, pool_id: str, address: str, port: int = 80, **attrs: Any) -> dict[str, Any]:
    body = {"address": address, "protocol_port": port, **attrs}
    r = c.post(f"/v2/lbaas/pools/{pool_id}/members", json={"member": body})
    assert r.status_code == 201, r.text
    return r.json()["member"]  # type: ignore[no-any-return]


class FakeOperator:
    """Stands in for the operator, which these tests do not run: every 50 ms
    it marks each load balancer's current generation observed (ACTIVE,
    ONLINE) and finishes requested deletions by removing the documents."""

    def __init__(self, endpoint: str, interval: float = 0.05) -> None:
        self.endpoint = endpoint
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="fake-operator", daemon=True)

    async def _run(self) -> None:
        store = EtcdStore(self.endpoint)
        try:
            while not self._stop.is_set():
                items, _ = await store.list(keys.LB_PREFIX)
                statuses = {
                    i.key: LoadBalancerStatus.model_validate_json(i.value)
                    for i in (await store.list(keys.STATUS_PREFIX))[0]
                }
                for item in items:
                    lb = LoadBalancer.model_validate_json(item.value)
                    if lb.deleting:
                        await store.delete(keys.lb_key(lb.id))
                        await store.delete(keys.status_key(lb.id))
                        continue
                    st = statuses.get(keys.status_key(lb.id))
                    if st is None or st.observed_generation < lb.generation:
                        await write_status(store, lb)
                await asyncio.sleep(self.interval)
        finally:
            await store.close()

    def __enter__(self) -> FakeOperator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
