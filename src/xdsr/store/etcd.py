"""The Store on etcd v3, through etcd's JSON gateway (/v3/...).

The gateway speaks the same API as etcd's gRPC clients (range, put, txn,
watch, leases) over HTTP/JSON, which keeps xdsr free of a gRPC stack and of
the unmaintained Python etcd clients. Keys and values travel base64-encoded;
64-bit numbers travel as strings.

Several endpoints (the members of an etcd cluster, "http://a:2379,http://b:2379"):
requests go to one of them; when it cannot be reached the client fails over
to the next. A request that surely never arrived (the connection was
refused or never opened) is retried on the next member at once; one that
may have arrived (the answer was lost) is retried only if it reads, and a
write raises StoreUnavailable as before ("may or may not have happened"),
the next request going to the next member. Watches follow: a broken watch
raises StoreUnavailable, the caller re-lists and watches again, on the
member that answers now.

TLS (https:// endpoints; a CA, and a client certificate when etcd asks for
one) and etcd's own authentication (user and password: the client gets a
token from /v3/auth/authenticate and gets a new one when etcd refuses it)
come from EtcdConfig, which the command line fills from the environment
(the ETCDCTL_* variables etcdctl reads, docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import Histogram

from xdsr.store.base import Compacted, Conflict, Event, Item, Put, StoreUnavailable, put_each

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


@dataclass(frozen=True)
class EtcdConfig:
    """How to reach etcd beyond its endpoints: TLS files, and a user for etcd's authentication."""

    ca: Path | None = None  # the CA of etcd's server certificates (https:// endpoints)
    cert: Path | None = None  # this client's certificate, when etcd asks for one (--client-cert-auth)
    key: Path | None = None
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> EtcdConfig:
        """From etcdctl's variables: ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY,
        ETCDCTL_USER ("name:password", or the name with ETCDCTL_PASSWORD)."""
        env = dict(os.environ if env is None else env)

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        user, password = env.get("ETCDCTL_USER") or None, env.get("ETCDCTL_PASSWORD") or None
        if user and ":" in user and password is None:
            user, password = user.split(":", 1)
        return cls(path("ETCDCTL_CACERT"), path("ETCDCTL_CERT"), path("ETCDCTL_KEY"), user, password)

    def verify(self) -> ssl.SSLContext | bool:
        if self.ca is None and self.cert is None:
            return True
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


def split_endpoints(endpoints: str | Sequence[str]) -> list[str]:
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    out = [e.strip().rstrip("/") for e in endpoints if e.strip()]
    if not out:
        raise ValueError("no etcd endpoint given")
    return out


# Unary requests go through aiohttp: httpcore (under httpx) walked every
# pooled connection per request and parsed answers in pure Python, about a
# quarter of the API server's CPU per create; aiohttp's pool and C parser
# cost a fraction of that. Watches too: reading their stream through httpx
# was a tenth of the operator's CPU in a burst of creates.
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, ssl.SSLError)
# Failures after which the request surely never reached etcd.
_NOT_SENT = (aiohttp.ClientConnectorError,)
_JSON = {"Content-Type": "application/json"}
_READS = ("/v3/kv/range",)
# put_many's transactions: within etcd's defaults (--max-txn-ops 128,
# --max-request-bytes 1.5 MiB; values travel base64-encoded, a third larger).
_TXN_OPS = 64
_TXN_BYTES = 512 * 1024
_TXN_IN_FLIGHT = 8


@dataclass(frozen=True)
class _Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class EtcdStore:
    """Store implementation on etcd: one endpoint, or the members of a cluster (failover)."""

    def __init__(self, endpoints: str | Sequence[str], timeout: float = 3.0, config: EtcdConfig | None = None) -> None:
        self.endpoints = split_endpoints(endpoints)
        self._current = 0
        self._timeout = timeout
        self.config = config or EtcdConfig()
        self._verify = self.config.verify()
        self._http: aiohttp.ClientSession | None = None  # made in the running loop, at the first request
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()

    @property
    def endpoint(self) -> str:
        """The member requests go to now."""
        return self.endpoints[self._current]

    def _fail_over(self, failed: str) -> None:
        if self.endpoint == failed and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)
            log.warning("etcd at %s failed; using %s", failed, self.endpoint)

    async def _authenticate(self, endpoint: str, stale: str | None) -> None:
        async with self._auth_lock:
            if self._token != stale:
                return  # another request got a new token meanwhile
            resp = await self._request(
                endpoint, "/v3/auth/authenticate", {"name": self.config.user, "password": self.config.password}
            )
            if resp.status_code != 200:
                raise StoreUnavailable(
                    f"etcd at {endpoint}: authentication as {self.config.user!r} failed: {resp.text[:200]}"
                )
            self._token = resp.json()["token"]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=100, ssl=self._verify if isinstance(self._verify, ssl.SSLContext) else True
                ),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._http

    async def _request(self, endpoint: str, path: str, body: dict[str, Any], token: str | None = None) -> _Answer:
        headers = {**_JSON, "Authorization": token} if token else _JSON
        async with self._session().post(endpoint + path, data=json.dumps(body).encode(), headers=headers) as resp:
            return _Answer(resp.status, await resp.read())

    async def _post(self, endpoint: str, path: str, body: dict[str, Any]) -> _Answer:
        """One request to one member, with a (new) auth token when etcd wants one."""
        if self.config.user and self._token is None:
            await self._authenticate(endpoint, None)
        resp = await self._request(endpoint, path, body, self._token)
        if self.config.user and resp.status_code == 401:
            await self._authenticate(endpoint, self._token)
            resp = await self._request(endpoint, path, body, self._token)
        return resp

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        last: Exception | None = None
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoint
            try:
                with STORE_SECONDS.labels(path.rsplit("/", 1)[-1]).time():
                    resp = await self._post(endpoint, path, body)
            except _TRANSPORT_ERRORS as exc:
                last = exc
                self._fail_over(endpoint)
                if isinstance(exc, _NOT_SENT) or path in _READS:
                    continue  # never arrived, or harmless to repeat
                raise StoreUnavailable(f"etcd at {endpoint}: {exc.__class__.__name__}: {exc}") from exc
            if resp.status_code == 503 or (resp.status_code >= 500 and "no leader" in resp.text):
                # This member has lost its quorum: another may still have one.
                last = StoreUnavailable(f"etcd at {endpoint}: {path} -> HTTP {resp.status_code}: {resp.text[:200]}")
                self._fail_over(endpoint)
                if path in _READS:
                    continue
                raise last
            if resp.status_code != 200:
                raise StoreUnavailable(f"etcd at {endpoint}: {path} -> HTTP {resp.status_code}: {resp.text[:200]}")
            return resp.json()  # type: ignore[no-any-return]
        where = ", ".join(self.endpoints)
        raise StoreUnavailable(f"etcd at {where}: {last.__class__.__name__}: {last}") from last

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

    async def put_many(self, puts: Sequence[Put]) -> list[int | Conflict]:
        # Several puts in one transaction: one request, one raft entry and
        # one disk sync for all of them, and one watch message per watcher.
        chunks: list[list[Put]] = []
        size = 0
        for p in puts:
            if not chunks or len(chunks[-1]) >= _TXN_OPS or size + len(p.value) > _TXN_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(p)
            size += len(p.value)
        sem = asyncio.Semaphore(_TXN_IN_FLIGHT)

        async def chunk(ps: list[Put]) -> list[int | Conflict]:
            async with sem:
                if len(ps) == 1:
                    return await put_each(self, ps)
                out = await self._call(
                    "/v3/kv/txn",
                    {
                        "compare": [self._compare(p.key, p.expect) for p in ps if p.expect is not None],
                        "success": [{"request_put": {"key": _b64(p.key), "value": _b64(p.value)}} for p in ps],
                    },
                )
                if out.get("succeeded"):
                    rev = int(out["header"]["revision"])
                    return [rev] * len(ps)
            # One of them was written by someone else meanwhile: each alone.
            return await put_each(self, ps)

        done = await asyncio.gather(*(chunk(c) for c in chunks))
        return [r for rs in done for r in rs]

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
                # A watch is a long-lived streaming response: no read timeout,
                # but etcd sends progress notifications so a dead connection
                # is noticed.
                "progress_notify": True,
            }
        }
        timeout = aiohttp.ClientTimeout(total=None, connect=self._timeout, sock_connect=self._timeout)
        endpoint = self.endpoint
        try:
            if self.config.user and self._token is None:
                await self._authenticate(endpoint, None)
            headers = {**_JSON, "Authorization": self._token} if self._token else _JSON
            async with self._session().post(
                endpoint + "/v3/watch", data=json.dumps(body).encode(), headers=headers, timeout=timeout
            ) as resp:
                if resp.status == 401 and self.config.user:
                    stale = self._token
                    await self._authenticate(endpoint, stale)
                    raise StoreUnavailable("etcd watch: the auth token expired; watch again")
                if resp.status != 200:
                    raise StoreUnavailable(f"etcd watch: HTTP {resp.status}")
                # One JSON message per line, of any length (a transaction of
                # many puts comes as one): split here, not by the stream's
                # readline, which refuses lines past its buffer's limit.
                buf = bytearray()
                async for chunk in resp.content.iter_any():
                    searched = len(buf)
                    buf += chunk
                    while (nl := buf.find(b"\n", searched)) >= 0:
                        line = bytes(buf[:nl])
                        del buf[: nl + 1]
                        searched = 0
                        if line.strip():
                            for event in self._watch_events(line, start_revision):
                                yield event
                raise StoreUnavailable("etcd closed the watch stream")
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            self._fail_over(endpoint)
            raise StoreUnavailable(f"etcd watch at {endpoint}: {exc.__class__.__name__}: {exc}") from exc
        except StoreUnavailable:
            self._fail_over(endpoint)  # the caller watches again, on the next member
            raise

    def _watch_events(self, line: bytes, start_revision: int) -> list[Event]:
        msg = json.loads(line)
        if "error" in msg:
            if self.config.user and "token" in str(msg["error"]):
                self._token = None  # expired: the next request authenticates again
            raise StoreUnavailable(f"etcd watch: {msg['error']}")
        result = msg.get("result") or {}
        if result.get("compact_revision") and result.get("canceled"):
            raise Compacted(start_revision, int(result["compact_revision"]))
        if result.get("canceled"):
            raise StoreUnavailable(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
        out = []
        for ev in result.get("events") or []:
            kv = ev["kv"]
            out.append(
                Event(
                    type="delete" if ev.get("type") == "DELETE" else "put",
                    key=_unb64(kv["key"]).decode(),
                    value=_unb64(kv.get("value")),
                    mod_revision=int(kv.get("mod_revision", 0)),
                )
            )
        return out

    async def grant_lease(self, ttl: int) -> int:
        out = await self._call("/v3/lease/grant", {"TTL": str(ttl)})
        return int(out["ID"])

    async def keep_alive(self, lease: int) -> bool:
        out = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        return int((out.get("result") or {}).get("TTL", 0)) > 0

    async def revoke_lease(self, lease: int) -> None:
        await self._call("/v3/lease/revoke", {"ID": str(lease)})

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

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
