"""Concurrent changes to one load balancer all persist: each is a
compare-and-swap of the whole document, retried when another won the race —
also across API server replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.apiserver.helpers import TOKEN_A, ServerThread, client, create_lb, create_pool, eventually, stored
from xdsr.local.etcd import EtcdServer


@pytest.fixture(scope="module")
def replica(etcd: EtcdServer) -> Iterator[ServerThread]:
    """A second API server on the same store."""
    server = ServerThread(etcd.endpoint).start()
    try:
        yield server
    finally:
        server.close()


async def _post_all(urls: list[str], path: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    clients = [httpx.AsyncClient(base_url=u, headers={"X-Auth-Token": TOKEN_A}, timeout=30) for u in urls]
    try:
        return await asyncio.gather(*(clients[i % len(clients)].post(path, json=b) for i, b in enumerate(bodies)))
    finally:
        for c in clients:
            await c.aclose()


def test_twenty_members_in_parallel(etcd: EtcdServer, api: ServerThread) -> None:
    with client(api) as c:
        lb = create_lb(c)
        pool = create_pool(c, loadbalancer_id=lb["id"])
        generation = stored(etcd.endpoint, lb["id"]).generation  # type: ignore[union-attr]
        bodies: list[dict[str, object]] = [
            {"member": {"address": f"192.0.2.{i}", "protocol_port": 80}} for i in range(1, 21)
        ]
        responses = asyncio.run(_post_all([api.url], f"/v2/lbaas/pools/{pool['id']}/members", bodies))
        assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
        ids = {r.json()["member"]["id"] for r in responses}
        listed = c.get(f"/v2/lbaas/pools/{pool['id']}/members").json()["members"]
        assert {m["id"] for m in listed} == ids
    doc = stored(etcd.endpoint, lb["id"])
    assert doc is not None and {m.id for m in doc.pools[0].members} == ids
    assert doc.generation == generation + 20
    assert sorted(m.generation for m in doc.pools[0].members) == list(range(generation + 1, generation + 21))


def test_two_replicas_mixed_changes(etcd: EtcdServer, api: ServerThread, replica: ServerThread) -> None:
    with client(api) as c:
        lb = create_lb(c)
        pool = create_pool(c, loadbalancer_id=lb["id"])
    members = [{"member": {"address": f"198.51.100.{i}", "protocol_port": 80}} for i in range(1, 21)]
    listeners = [
        {"listener": {"loadbalancer_id": lb["id"], "protocol": "UDP", "protocol_port": 1000 + i}} for i in range(10)
    ]

    async def body() -> tuple[list[httpx.Response], list[httpx.Response]]:
        return await asyncio.gather(
            _post_all([api.url, replica.url], f"/v2/lbaas/pools/{pool['id']}/members", members),  # type: ignore[arg-type]
            _post_all([api.url, replica.url], "/v2/lbaas/listeners", listeners),  # type: ignore[arg-type]
        )

    made_members, made_listeners = asyncio.run(body())
    assert all(r.status_code == 201 for r in [*made_members, *made_listeners])
    doc = stored(etcd.endpoint, lb["id"])
    assert doc is not None
    assert len(doc.pools[0].members) == 20 and len(doc.listeners) == 10
    # Each replica answers from its own cache, which the watch brings up to date.
    for server in (api, replica):
        with client(server) as c:
            _eventually_count(c, f"/v2/lbaas/pools/{pool['id']}/members", "members", 20)
            _eventually_count(c, f"/v2/lbaas/listeners?loadbalancer_id={lb['id']}", "listeners", 10)


def _eventually_count(c: httpx.Client, path: str, key: str, n: int) -> None:
    def check() -> None:
        assert len(c.get(path).json()[key]) == n

    eventually(check)
