"""What only the etcd store does, against a real etcd: going away and coming
back. What every store does is in test_contract.py, run over etcd too."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from xdsr.local.etcd import EtcdServer
from xdsr.store import Compacted, StoreUnavailable
from xdsr.store.etcd import EtcdStore


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def prefix() -> str:
    return f"/t/{uuid.uuid4().hex[:8]}/"


def test_unavailable_and_compacted() -> None:
    async def body() -> None:
        with EtcdServer() as server:
            s, p = EtcdStore(server.endpoint, timeout=1.0), prefix()
            first = await s.put(p + "a", b"1")
            last = first
            for i in range(5):
                last = await s.put(p + "a", str(i).encode())
            await s._call("/v3/kv/compaction", {"revision": str(last), "physical": True})
            with pytest.raises(Compacted):
                async for _ in s.watch(p, first):
                    pass
            server.stop()
            with pytest.raises(StoreUnavailable):
                await s.get(p + "a")
            with pytest.raises(StoreUnavailable):
                async for _ in s.watch(p, last):
                    pass
            server.start()
            assert (await s.get(p + "a")).value == b"4"  # type: ignore[union-attr]
            with contextlib.suppress(Exception):
                await s.close()

    run(body())
