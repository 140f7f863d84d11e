"""The agent's HTTP API (FastAPI): what the operator calls, what Prometheus scrapes.

PUT /v1/state     DesiredState -> AgentState    (bearer token)
GET /v1/state     AgentState                    (bearer token)
GET /v1/desired   the DesiredState last applied (bearer token)
GET /v1/bgp       BgpStatus: sessions and what the node announces (bearer token)
PUT /v1/drain     withdraw every VIP, keep forwarding -> BgpStatus (bearer token)
DELETE /v1/drain  announce again -> BgpStatus (bearer token)
GET /healthz      {"ok", "name", "generation"}
GET /metrics      Prometheus text

Served over mutual TLS (xdsr.web.tls; docs/agent.md), or plain HTTP when
asked for with --insecure-http. No /docs, /redoc or /openapi.json.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from xdsr.agent.bird import BirdError
from xdsr.agent.core import Agent
from xdsr.agent.rules import InvalidState
from xdsr.model.agent import AgentState, DesiredState
from xdsr.model.bgp import BgpStatus
from xdsr.web.guard import BodyLimit, header

PROTECTED_PREFIX = "/v1/"
# The largest desired state read. A state is a list of services with their
# backends (the tables are built here, not sent): 64 MiB is room for some
# 300,000 backends, far beyond what a node's maps hold.
MAX_BODY_BYTES = 64 << 20


def _detail(status: int, message: str) -> bytes:
    return json.dumps({"detail": message}).encode()


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class BearerAuth:
    """Checks `Authorization: Bearer <token>` on /v1/ before anything else
    (a FastAPI dependency would run after the body is parsed, answering an
    unauthenticated client's bad JSON with a 400 instead of a 401).

    Digests of equal length are compared in constant time, so neither the
    token's content nor its length shows in the response time."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self.app = app
        self._digest = _digest(token)

    def _ok(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(_digest(given.strip()), self._digest)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIX) and not self._ok(scope):
            body = json.dumps({"detail": "missing or wrong bearer token"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="xdsr-agent"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


# A desired state at least this large (bytes) is taken with the cyclic
# garbage collector paused (CollectorPause): a whole group, not a delta.
PAUSE_COLLECTOR_BYTES = 1 << 20


class CollectorPause:
    """The cyclic garbage collector paused while a large desired state is
    parsed, checked, built and applied, and resumed once it is answered.

    A full state of a whole group makes about a million objects at once, and
    the collector, run by their number, walked them again and again on the
    way to the node forwarding: about 0.1 s of a 4095-service state's CPU,
    more when a full collection fell inside (scripts/bench_resync.py).
    Nearly all of them are freed by reference counting or live on as the
    node's state; whatever cycles they leave are collected once the
    collector runs again, after the answer. Only an authenticated request
    gets here (BearerAuth runs first)."""

    def __init__(self, app: ASGIApp, min_bytes: int = PAUSE_COLLECTOR_BYTES) -> None:
        self.app = app
        self.min_bytes = min_bytes
        self._inside = 0  # large states being taken (a retry may overlap)
        self._was_enabled = True

    def _large_state(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "PUT" or scope["path"] != "/v1/state":
            return False
        declared = header(scope, b"content-length")
        return declared is not None and declared.isdigit() and int(declared) >= self.min_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._large_state(scope):
            await self.app(scope, receive, send)
            return
        if not self._inside:
            self._was_enabled = gc.isenabled()
            gc.disable()
        self._inside += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._inside -= 1
            if not self._inside and self._was_enabled:
                gc.enable()


def _field(loc: tuple[int | str, ...]) -> str:
    """("body", "services", 0, "port") -> "services[0].port"."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in ("tagged-union",) or "[" in part:
            continue  # pydantic's validator / union branch names, not fields
        else:
            out += f".{part}" if out else part
    return out or "body"


def _invalid(errors: list[dict[str, str]]) -> JSONResponse:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(
        {"detail": f"invalid desired state, nothing was changed: {detail}", "errors": errors}, status_code=422
    )


_STATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong bearer token"},
}


def create_app(agent: Agent, token: bytes, lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]]) -> FastAPI:
    app = FastAPI(
        title="xdsr agent",
        version=agent.version,
        summary="The LB node agent: owns the node's XDP data plane.",
        lifespan=lifespan,
        # No interactive docs and no schema on a node: the API is documented
        # in docs/agent.md, and a node answers only what the operator needs.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    # The last added runs first: the token, then the size (web.guard), then
    # the collector's pause for a large state.
    app.add_middleware(CollectorPause)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, render=_detail)
    app.add_middleware(BearerAuth, token=token)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            msg = next(e.get("ctx", {}).get("error", e["msg"]) for e in errors if e.get("type") == "json_invalid")
            return JSONResponse({"detail": f"body is not valid JSON: {msg}"}, status_code=400)
        return _invalid([{"field": _field(tuple(e["loc"])), "message": str(e["msg"])} for e in errors])

    @app.put(
        "/v1/state",
        response_model=AgentState,
        responses={
            **_STATE_RESPONSES,
            202: {"model": AgentState, "description": "a part of a full state, kept until its last part"},
            409: {"model": AgentState, "description": "older than the applied generation: the current state"},
            422: {"description": "invalid desired state (each error names its field); nothing was changed"},
            500: {"model": AgentState, "description": "the data plane refused the apply; `error` says why"},
        },
    )
    async def put_state(desired: DesiredState) -> JSONResponse:
        """Replace everything this node forwards. Older generation: 409; the
        same generation and content: no-op."""
        try:
            status, state = await agent.put(desired)
        except InvalidState as exc:
            return _invalid([{"field": e.field, "message": e.message} for e in exc.errors])
        return JSONResponse(state.model_dump(mode="json"), status_code=status)

    @app.get("/v1/state", response_model=AgentState, responses=_STATE_RESPONSES)
    async def get_state(since: int | None = Query(None, ge=0), instance: str = "") -> AgentState:
        """Every report; with since and instance (of an earlier answer), only
        the load balancers whose reports changed after it (partial, the
        changed ones named), unless this agent cannot tell: then every report."""
        return await agent.state(since=(instance, since) if since is not None else None)

    @app.get("/v1/desired", response_model=DesiredState | None, responses=_STATE_RESPONSES)
    async def get_desired() -> JSONResponse:
        """The desired state last applied, whole (the deltas merged in; null
        before the first PUT since start)."""
        d = agent.desired
        if d is None:
            return JSONResponse(None)
        # Always the full state: no base, no changes; the epoch when there is one.
        drop = {"base", "changes", "part", "parts"} | (set() if d.epoch else {"epoch"})
        return JSONResponse(d.model_dump(mode="json", exclude=drop))

    @app.get("/v1/bgp", response_model=BgpStatus, responses=_STATE_RESPONSES)
    async def get_bgp() -> BgpStatus:
        """The node's BGP sessions and what it announces (docs/bgp.md)."""
        return agent.bgp.status() if agent.bgp is not None else BgpStatus(enabled=False)

    _NO_BGP = {409: {"description": "BGP is not configured on this node"}}

    async def _drain(drained: bool) -> JSONResponse:
        if agent.bgp is None:
            return JSONResponse({"detail": "BGP is not configured on this node (xdsr agent --bgp-config)"}, 409)
        try:
            status = await agent.bgp.set_drained(drained)
        except BirdError as exc:
            # Recorded: the speaker's loop keeps telling BIRD until it listens.
            return JSONResponse({"detail": f"drained={drained} recorded, but BIRD was not told yet: {exc}"}, 503)
        return JSONResponse(status.model_dump(mode="json"))

    @app.put("/v1/drain", response_model=BgpStatus, responses={**_STATE_RESPONSES, **_NO_BGP})
    async def put_drain() -> JSONResponse:
        """Drain: withdraw every VIP from the routers; the node keeps forwarding what still arrives."""
        return await _drain(True)

    @app.delete("/v1/drain", response_model=BgpStatus, responses={**_STATE_RESPONSES, **_NO_BGP})
    async def delete_drain() -> JSONResponse:
        """End a drain: announce again what the data plane holds."""
        return await _drain(False)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"ok": True, "name": agent.config.name, "generation": agent.generation}

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(await agent.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
