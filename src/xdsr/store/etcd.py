"""The Store on etcd v3, through etcd's JSON gateway (/v3/...).

The gateway speaks the same API as etcd's gRPC clients (range, put, txn,
watch, leases) over HTTP/JSON, which keeps xdsr free of a gRPC stack and of
the unmaintained Python etcd clients. Keys and values travel base64-encoded;
64-bit numbers travel as strings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client import Histogram

from xdsr.store.base import Compacted, Conflict, Event, Item, StoreUnavailable

log = logging.getLogger("xdsr.store")


def _b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def prefix_end(prefix: str) -> bytes:
    """The first key after every key that starts with prefix."""
    raw = bytearray(prefix.encode())
    for i in reversed(range(len(raw))):
        if raw[i] < 0xFF:
            raw[i] += 1
            return bytes(raw[: i + 1])
    return b"\0"


def _item(kv: dict[str, Any]) -> Item:
    return Item(
        key=_unb64(kv["key"]).decode(),
        value=_unb64(kv.get("value")),
        mod_revision=int(kv.get("mod_revision", 0)),
        create_revision=int(kv.get("create_revision", 0)),
    )


# Every unary request (range, put, txn, deleterange, lease...): the API
# server's and the operator's latency follow this one.
STORE_SECONDS = Histogram(
    "xdsr_store_request_duration_seconds",
    "Time of one request to etcd, by operation (range, put, txn, ...)",
    ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0),
)


class EtcdStore:
    """Store implementation on one etcd endpoint (http://host:port)."""

    def __init__(self, endpoint: str, timeout: float = 3.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.endpoint, timeout=timeout)

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            with STORE_SECONDS.labels(path.rsplit("/", 1)[-1]).time():
                resp = await self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"etcd at {self.endpoint}: {exc.__class__.__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise StoreUnavailable(f"etcd at {self.endpoint}: {path} -> HTTP {resp.status_code}: {resp.text[:200]}")
        return resp.json()  # type: ignore[no-any-return]

    async def get(self, key: str) -> Item | None:
        out = await self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = out.get("kvs") or []
        return _item(kvs[0]) if kvs else None

    async def list(self, prefix: str) -> tuple[list[Item], int]:
        out = await self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        items = [_item(kv) for kv in out.get("kvs") or []]
        return items, int(out["header"]["revision"])

    async def revision(self) -> int:
        out = await self._call("/v3/kv/range", {"key": _b64("\0"), "limit": 1, "keys_only": True})
        return int(out["header"]["revision"])

    @staticmethod
    def _compare(key: str, expect: int) -> dict[str, Any]:
        if expect == 0:
            return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(expect)}

    async def _txn_failed(self, key: str, expect: int, out: dict[str, Any]) -> Conflict:
        actual = 0
        for r in out.get("responses") or []:
            kvs = (r.get("response_range") or {}).get("kvs") or []
            if kvs:
                actual = int(kvs[0].get("mod_revision", 0))
        return Conflict(key, expect, actual)

    async def put(self, key: str, value: bytes, *, expect: int | None = None, lease: int | None = None) -> int:
        req: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            req["lease"] = str(lease)
        if expect is None:
            out = await self._call("/v3/kv/put", req)
            return int(out["header"]["revision"])
        out = await self._call(
            "/v3/kv/txn",
            {
                "compare": [self._compare(key, expect)],
                "success": [{"request_put": req}],
                "failure": [{"request_range": {"key": _b64(key)}}],
            },
        )
        if not out.get("succeeded"):
            raise await self._txn_failed(key, expect, out)
        return int(out["header"]["revision"])

    async def delete(self, key: str, *, expect: int | None = None) -> int:
        req = {"key": _b64(key)}
        if expect is None:
            out = await self._call("/v3/kv/deleterange", req)
            return int(out["header"]["revision"]) if int(out.get("deleted", 0)) else 0
        out = await self._call(
            "/v3/kv/txn",
            {
                "compare": [self._compare(key, expect)],
                "success": [{"request_delete_range": req}],
                "failure": [{"request_range": req}],
            },
        )
        if not out.get("succeeded"):
            raise await self._txn_failed(key, expect, out)
        resp = (out.get("responses") or [{}])[0].get("response_delete_range") or {}
        return int(out["header"]["revision"]) if int(resp.get("deleted", 0)) else 0

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:  # type: ignore[override]
        body = {
            "create_request": {
                "key": _b64(prefix),
                "range_end": _b64(prefix_end(prefix)),
                "start_revision": str(start_revision),
            }
        }
        # A watch is a long-lived streaming response: no read timeout, but
        # etcd sends progress notifications so a dead connection is noticed.
        body["create_request"]["progress_notify"] = True
        timeout = httpx.Timeout(self._timeout, read=None)
        try:
            async with (
                httpx.AsyncClient(base_url=self.endpoint, timeout=timeout) as http,
                http.stream("POST", "/v3/watch", json=body) as resp,
            ):
                if resp.status_code != 200:
                    raise StoreUnavailable(f"etcd watch: HTTP {resp.status_code}")
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if "error" in msg:
                        raise StoreUnavailable(f"etcd watch: {msg['error']}")
                    result = msg.get("result") or {}
                    if result.get("compact_revision") and result.get("canceled"):
                        raise Compacted(start_revision, int(result["compact_revision"]))
                    if result.get("canceled"):
                        raise StoreUnavailable(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
                    for ev in result.get("events") or []:
                        kv = ev["kv"]
                        yield Event(
                            type="delete" if ev.get("type") == "DELETE" else "put",
                            key=_unb64(kv["key"]).decode(),
                            value=_unb64(kv.get("value")),
                            mod_revision=int(kv.get("mod_revision", 0)),
                        )
                raise StoreUnavailable("etcd closed the watch stream")
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"etcd watch at {self.endpoint}: {exc.__class__.__name__}: {exc}") from exc

    async def grant_lease(self, ttl: int) -> int:
        out = await self._call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(out["ID"])

    async def keep_alive(self, lease: int) -> bool:
        out = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        return int((out.get("result") or {}).get("TTL", 0)) > 0

    async def revoke_lease(self, lease: int) -> None:
        await self._call("/v3/lease/revoke", {"ID": str(lease)})

    async def close(self) -> None:
        await self._http.aclose()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Until etcd answers (it may still be starting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.revision()
                return
            except StoreUnavailable:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)
