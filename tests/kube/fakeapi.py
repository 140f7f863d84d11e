"""A thin fake of the Kubernetes API server, for the Kubernetes store's tests.

Why not kmock: kmock 0.8's emulator (the Kubernetes-aware mock server from
kopf's author) keeps objects as merged dicts and answers every list with the
literal resourceVersion "...": it has no resourceVersion ordering, no 409 on a
stale resourceVersion, no 410 Gone on a watch from compacted history, no
status subresource and no bookmarks, which are exactly the conventions the
store relies on. So this module implements those conventions, and only those,
the way kube-apiserver does on etcd3:

- one cluster-wide, increasing resourceVersion (etcd's revision); lists carry
  it in metadata.resourceVersion;
- create: 409 AlreadyExists; status is dropped on create (status subresource);
- update (PUT): metadata.resourceVersion is required for custom resources
  (422 otherwise), 409 Conflict if it is not the current one, 404 if absent;
  a PUT to the main resource keeps the stored status, a PUT to /status keeps
  the stored spec and metadata; generation counts spec changes; fieldManager
  is recorded in managedFields;
- delete: preconditions.resourceVersion (409), the answer is the object at the
  deletion's resourceVersion;
- watch from a resourceVersion: every later change, in order; from a compacted
  one: an ERROR event with a 410 Status; without one: synthetic ADDED events
  then changes; allowWatchBookmarks: BOOKMARK events with the current
  resourceVersion; timeoutSeconds ends the stream;
- equality label selectors (k=v,k2=v2).

No garbage collection, admission or schema validation (tests validate the
CRD schemas separately). Served by uvicorn on a thread, so that a test's
event loop and child processes can both reach it over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Obj = dict[str, Any]


def _status(code: int, reason: str, message: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.body = _status(code, reason, message)
        self.code = code


@dataclass
class _Change:
    rv: int
    resource: str  # "<group>/<plural>"
    namespace: str
    type: str  # ADDED MODIFIED DELETED
    obj: Obj


@dataclass
class FakeState:
    rv: int = 1
    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)
    history: list[_Change] = field(default_factory=list)
    compacted: int = 0
    bookmark_interval: float = 1.0
    changed: asyncio.Event | None = None  # set, and replaced, on every change

    def now(self) -> str:
        return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def record(self, resource: str, ns: str, type_: str, obj: Obj) -> None:
        self.history.append(_Change(self.rv, resource, ns, type_, copy.deepcopy(obj)))


def _matches(obj: Obj, selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in selector.split(","):
        k, _, v = term.partition("=")
        if labels.get(k.strip()) != v.strip().lstrip("="):
            return False
    return True


class FakeKubeApi:
    """The fake, running on 127.0.0.1:<port> until stop()."""

    def __init__(self, bookmark_interval: float = 1.0) -> None:
        self.state = FakeState(bookmark_interval=bookmark_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, query (for assertions)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- lifecycle ---

    def start(self) -> FakeKubeApi:
        app = Starlette(routes=[
            Route("/apis/{group}/{version}/namespaces/{ns}/{plural}", self._collection, methods=["GET", "POST"]),
            Route("/api/{version}/namespaces/{ns}/{plural}", self._collection, methods=["GET", "POST"]),
            Route("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", self._item,
                  methods=["GET", "PUT", "DELETE"]),
            Route("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status", self._status,
                  methods=["GET", "PUT"]),
        ])  # fmt: skip
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self.state.changed = asyncio.Event()
            ready.set()
            assert self._server is not None
            loop.run_until_complete(self._server.serve(sockets=[self._sock]))
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-kube-api", daemon=True)
        self._thread.start()
        ready.wait(5)
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake Kubernetes API did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, path: Path, namespace: str = "xdsr") -> Path:
        """A kubeconfig that points at the fake (no credentials: it checks none)."""
        path.write_text(yaml.safe_dump(self._kubeconfig(namespace)))
        return path

    def _kubeconfig(self, namespace: str) -> Obj:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        }  # fmt: skip

    def config(self, namespace: str = "xdsr") -> Any:
        """A lightkube configuration for the fake."""
        from lightkube import KubeConfig

        return KubeConfig.from_dict(self._kubeconfig(namespace))

    def compact(self, revision: int) -> None:
        """Forget history before revision (etcd's compaction): older watches get 410."""
        assert self._loop is not None

        def cut() -> None:
            self.state.history = [c for c in self.state.history if c.rv >= revision]
            self.state.compacted = max(self.state.compacted, revision)

        self._loop.call_soon_threadsafe(cut)
        done = threading.Event()
        self._loop.call_soon_threadsafe(done.set)
        done.wait(5)

    # --- handlers ---

    def _key(self, req: Request) -> tuple[str, str, str]:
        p = req.path_params
        return (f"{p.get('group', 'core')}/{p['plural']}", p["ns"], p.get("name", ""))

    async def _notify(self) -> None:
        assert self.state.changed is not None
        done, self.state.changed = self.state.changed, asyncio.Event()
        done.set()

    async def _collection(self, req: Request) -> Response:
        self.requests.append((req.method, req.url.path, dict(req.query_params)))
        try:
            if req.method == "POST":
                return await self._create(req)
            if req.query_params.get("watch") in ("true", "1"):
                return self._watch(req)
            return self._list(req)
        except ApiError as exc:
            return JSONResponse(exc.body, exc.code)

    def _list(self, req: Request) -> Response:
        resource, ns, _ = self._key(req)
        sel = req.query_params.get("labelSelector")
        items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.state.objects.items())
                 if r == resource and n == ns and _matches(o, sel)]  # fmt: skip
        return JSONResponse({"kind": "List", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(self.state.rv)}, "items": items})  # fmt: skip

    def _stamp(self, obj: Obj, manager: str | None, operation: str) -> None:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.state.rv)
        if manager:
            fields = [f for f in meta.get("managedFields") or [] if f.get("manager") != manager]
            fields.append({"manager": manager, "operation": operation, "time": self.state.now()})
            meta["managedFields"] = fields

    async def _create(self, req: Request) -> Response:
        resource, ns, _ = self._key(req)
        obj = await req.json()
        name = obj.get("metadata", {}).get("name")
        if not name and obj.get("metadata", {}).get("generateName"):
            name = obj["metadata"]["generateName"] + uuid.uuid4().hex[:5]
            obj["metadata"]["name"] = name
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if (resource, ns, name) in self.state.objects:
            raise ApiError(409, "AlreadyExists", f'{req.path_params["plural"]} "{name}" already exists')
        obj.pop("status", None)  # the status subresource: ignored on create
        self.state.rv += 1
        meta = obj["metadata"]
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=self.state.now(), generation=1)
        self._stamp(obj, req.query_params.get("fieldManager"), "Update")
        self.state.objects[(resource, ns, name)] = obj
        self.state.record(resource, ns, "ADDED", obj)
        await self._notify()
        return JSONResponse(obj, 201)

    async def _item(self, req: Request) -> Response:
        self.requests.append((req.method, req.url.path, dict(req.query_params)))
        try:
            key = self._key(req)
            if req.method == "GET":
                return JSONResponse(self._get(key))
            if req.method == "PUT":
                return JSONResponse(await self._update(req, key, status=False))
            return JSONResponse(await self._delete(req, key))
        except ApiError as exc:
            return JSONResponse(exc.body, exc.code)

    async def _status(self, req: Request) -> Response:
        self.requests.append((req.method, req.url.path, dict(req.query_params)))
        try:
            key = self._key(req)
            if req.method == "GET":
                return JSONResponse(self._get(key))
            return JSONResponse(await self._update(req, key, status=True))
        except ApiError as exc:
            return JSONResponse(exc.body, exc.code)

    def _get(self, key: tuple[str, str, str]) -> Obj:
        got = self.state.objects.get(key)
        if got is None:
            raise ApiError(404, "NotFound", f'"{key[2]}" not found')
        return copy.deepcopy(got)

    async def _update(self, req: Request, key: tuple[str, str, str], status: bool) -> Obj:
        new = await req.json()
        old = self.state.objects.get(key)
        if old is None:
            raise ApiError(404, "NotFound", f'"{key[2]}" not found')
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if not rv:
            raise ApiError(
                422, "Invalid", "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            )
        if rv != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on "{key[2]}": the object has been '
                           "modified; please apply your changes to the latest version and try again")  # fmt: skip
        if status:
            obj = copy.deepcopy(old)
            if "status" in new:
                obj["status"] = new["status"]
            else:
                obj.pop("status", None)
        else:
            obj = new
            for fixed in ("uid", "creationTimestamp", "generation", "namespace", "name"):
                obj["metadata"][fixed] = old["metadata"].get(fixed)
            if "status" in old:
                obj["status"] = old["status"]
            else:
                obj.pop("status", None)
            if obj.get("spec") != old.get("spec"):
                obj["metadata"]["generation"] = old["metadata"]["generation"] + 1
        self.state.rv += 1
        self._stamp(obj, req.query_params.get("fieldManager"), "Update")
        self.state.objects[key] = obj
        self.state.record(key[0], key[1], "MODIFIED", obj)
        await self._notify()
        return copy.deepcopy(obj)

    async def _delete(self, req: Request, key: tuple[str, str, str]) -> Obj:
        body = await req.body()
        opts = json.loads(body) if body else {}
        old = self.state.objects.get(key)
        if old is None:
            raise ApiError(404, "NotFound", f'"{key[2]}" not found')
        want = (opts.get("preconditions") or {}).get("resourceVersion")
        if want and want != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f'Precondition failed: ResourceVersion in precondition: {want}, '
                           f'ResourceVersion in object meta: {old["metadata"]["resourceVersion"]}')  # fmt: skip
        del self.state.objects[key]
        self.state.rv += 1
        old["metadata"]["resourceVersion"] = str(self.state.rv)  # as etcd3: the deletion's revision
        self.state.record(key[0], key[1], "DELETED", old)
        await self._notify()
        return old

    def _watch(self, req: Request) -> Response:
        resource, ns, _ = self._key(req)
        sel = req.query_params.get("labelSelector")
        bookmarks = req.query_params.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(req.query_params.get("timeoutSeconds") or 1800)
        since = req.query_params.get("resourceVersion")
        state = self.state

        def line(type_: str, obj: Obj) -> bytes:
            return json.dumps({"type": type_, "object": obj}).encode() + b"\n"

        async def events() -> AsyncIterator[bytes]:
            assert state.changed is not None
            if since and int(since) < state.compacted - 1:  # events after since: since+1 must be kept
                yield line("ERROR", _status(410, "Expired", f"too old resource version: {since} ({state.compacted})"))
                return
            if not since or since == "0":
                start = state.rv
                for (r, n, _), o in sorted(state.objects.items()):
                    if r == resource and n == ns and _matches(o, sel):
                        yield line("ADDED", o)
            else:
                start = int(since)
            end = time.monotonic() + timeout
            sent = start
            last_bookmark = time.monotonic()
            while time.monotonic() < end:
                for c in [c for c in state.history if c.rv > sent]:
                    if c.resource == resource and c.namespace == ns and _matches(c.obj, sel):
                        yield line(c.type, c.obj)
                sent = state.rv
                if bookmarks and time.monotonic() - last_bookmark >= state.bookmark_interval:
                    last_bookmark = time.monotonic()
                    kind = "Lease" if resource.startswith("coordination") else "Object"
                    yield line("BOOKMARK", {"kind": kind, "apiVersion": "v1",
                                            "metadata": {"resourceVersion": str(sent)}})  # fmt: skip
                changed = state.changed
                if state.rv == sent:
                    with contextlib.suppress(TimeoutError):
                        wait = min(state.bookmark_interval, max(0.0, end - time.monotonic()))
                        await asyncio.wait_for(changed.wait(), wait)

        return StreamingResponse(events(), media_type="application/json")


@contextlib.contextmanager
def fake_kube_api(bookmark_interval: float = 1.0) -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(bookmark_interval).start()
    try:
        yield api
    finally:
        api.stop()
