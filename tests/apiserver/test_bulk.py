"""What a create costs the store, however many load balancers exist: one
conditional write, no read (uniqueness and quotas are checked on the API
server's indexed copy of the store). Counted on the in-memory store; the
checks themselves keep their answers (a taken VIP, a met quota, a VIP of
another project) whatever the size."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.apiserver.helpers import PROJECT_A, TOKEN_A, TOKEN_ADMIN, TOKEN_B, TOKENS, run
from xdsr.apiserver import ApiServer
from xdsr.store.base import Event, Item
from xdsr.store.memory import MemoryStore

LB = "/v2/lbaas/loadbalancers"


class CountingStore(MemoryStore):
    """The in-memory store, counting the requests a client makes (watches aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def get(self, key: str) -> Item | None:
        self.calls["get"] += 1
        return await super().get(key)

    async def list(self, prefix: str) -> tuple[list[Item], int]:
        self.calls["list"] += 1
        return await super().list(prefix)

    async def put(self, key: str, value: bytes, *, expect: int | None = None, lease: int | None = None) -> int:
        self.calls["put"] += 1
        return await super().put(key, value, expect=expect, lease=lease)

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        self.calls["delete"] += 1
        return await super().delete(key, expect=expect)

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        return super().watch(prefix, start_revision)


def body(i: int, members: int = 3) -> dict[str, Any]:
    return {
        "loadbalancer": {
            "name": f"lb{i}",
            "vip_address": f"198.18.{i // 250}.{i % 250 + 1}",
            "vip_segment": {"type": "vlan", "id": 10},
            "listeners": [
                {
                    "protocol": "TCP",
                    "protocol_port": 80,
                    "default_pool": {
                        "name": f"pool{i}",
                        "protocol": "TCP",
                        "lb_algorithm": "ROUND_ROBIN",
                        "members": [
                            {"address": f"10.{i // 250}.{i % 250}.{j + 1}", "protocol_port": 80} for j in range(members)
                        ],
                    },
                }
            ],
        }
    }


@asynccontextmanager
async def served() -> AsyncIterator[tuple[CountingStore, httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]]:
    store = CountingStore()
    server = ApiServer(store, TOKENS, port=0)
    await server.start()
    try:
        async with (
            httpx.AsyncClient(base_url=server.url, headers={"X-Auth-Token": TOKEN_A}) as a,
            httpx.AsyncClient(base_url=server.url, headers={"X-Auth-Token": TOKEN_B}) as b,
            httpx.AsyncClient(base_url=server.url, headers={"X-Auth-Token": TOKEN_ADMIN}) as admin,
        ):
            yield store, a, b, admin
    finally:
        await server.stop()
        await store.close()


async def _create(store: CountingStore, c: httpx.AsyncClient, i: int) -> tuple[httpx.Response, Counter[str]]:
    before = Counter(store.calls)
    r = await c.post(LB, json=body(i))
    return r, store.calls - before


def test_a_create_costs_one_store_write_whatever_exists() -> None:
    async def go() -> None:
        async with served() as (store, a, b, admin):
            r, first = await _create(store, a, 0)
            assert r.status_code == 201, r.text
            assert first == Counter(put=1)
            for i in range(1, 300):
                assert (await a.post(LB, json=body(i))).status_code == 201
            r, later = await _create(store, a, 300)
            assert r.status_code == 201, r.text
            assert later == first
            # The checks still answer on the indexes: a VIP taken in the
            # project, in another project (without saying by whom), a met quota.
            r, _ = await _create(store, a, 7)
            assert r.status_code == 409 and "already the VIP of load balancer" in r.text, r.text
            r, _ = await _create(store, b, 7)
            assert r.status_code == 409 and "is not available" in r.text, r.text
            q = await admin.put(f"/v2/lbaas/quotas/{PROJECT_A}", json={"quota": {"loadbalancer": 302}})
            assert q.status_code == 202, q.text
            r, limited = await _create(store, a, 301)
            assert r.status_code == 201, r.text
            assert limited == first  # limits and usage come from the cache
            r, _ = await _create(store, a, 302)
            assert r.status_code == 403 and "Quota has been met for resources: Load Balancer" in r.text, r.text
            # After a deletion the project's usage goes down with it.
            gone = (await a.get(LB, params={"name": "lb0"})).json()["loadbalancers"][0]["id"]
            assert (await a.delete(f"{LB}/{gone}", params={"cascade": "true"})).status_code == 204
            await store.delete(f"/xdsr/lb/{gone}")  # what the operator does once the nodes let it go
            for _ in range(200):
                r, _ = await _create(store, a, 302)
                if r.status_code == 201:
                    break
            assert r.status_code == 201, r.text

    run(go())


def test_an_edit_costs_one_store_write() -> None:
    async def go() -> None:
        async with served() as (store, a, _b, _admin):
            lb = (await a.post(LB, json=body(0))).json()["loadbalancer"]
            pool = (await a.get("/v2/lbaas/pools", params={"loadbalancer_id": lb["id"]})).json()["pools"][0]
            member = {"member": {"address": "10.9.9.9", "protocol_port": 80}}
            before = Counter(store.calls)
            r = await a.post(f"/v2/lbaas/pools/{pool['id']}/members", json=member)
            assert r.status_code == 201, r.text
            assert store.calls - before == Counter(put=1)
            # A refusal is decided on the store's document (a read), not on the copy.
            before = Counter(store.calls)
            r = await a.post(f"/v2/lbaas/pools/{pool['id']}/members", json=member)
            assert r.status_code == 409, r.text
            assert store.calls - before == Counter(get=1)

    run(go())
