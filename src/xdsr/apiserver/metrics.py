"""What the API server tells an operator about itself: a request id on every
answer, one log line per request, and Prometheus metrics by route.

Every response carries `x-openstack-request-id: req-<uuid>` (OpenStack
clients print it with every error: "(Request-ID: req-...)"), and the same id
is in the request's log line, so an error a user reports can be found in
the log. Requests are counted and timed by route *template*
(`/v2/lbaas/pools/{pool_id}`), never the raw path, so the number of series
stays bounded whatever ids clients send.

`GET /metrics` serves the process's default registry: these metrics, the
store's, the operator's when it runs in the same process (`xdsr up`), and
prometheus-client's process_* and python_* collectors. `GET /healthz` says
whether the API can answer (its cache follows the store), without a token.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xdsr.apiserver.errors import fault

log = logging.getLogger("xdsr.apiserver.requests")

REQUESTS = Counter(
    "xdsr_api_requests_total",
    "API requests answered, by route template, method and status",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "xdsr_api_request_duration_seconds",
    "Time to answer an API request, by route template and method",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

REQUEST_ID = "x-openstack-request-id"
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The path with each path parameter put back as {name}, once the router
    has matched (it leaves the route and the parameters in the scope)."""
    if scope.get("route") is None:
        return UNMATCHED
    path: str = scope["path"]
    params = {k: str(v) for k, v in (scope.get("path_params") or {}).items() if str(v)}
    for name, value in params.items():
        if "/" in value and path.endswith(value):  # a {rest:path} catch-all
            path = path[: -len(value)] + "{" + name + "}"
    segments = path.split("/")
    for name, value in params.items():
        if "/" not in value:
            segments = ["{" + name + "}" if seg == value else seg for seg in segments]
    return "/".join(segments)


@functools.cache
def _series(route: str, method: str, status: int) -> tuple[Any, Any]:
    """The counter and histogram of one route template, method and status:
    found once (the templates are bounded, see above), not per request
    (prometheus-client checks and locks on every .labels())."""
    return REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method)


class RequestLog:
    """ASGI middleware: request id, log line, metrics. Sits inside the path
    aliases, so routes are matched on the path the router sees."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req-{uuid.uuid4()}"
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (REQUEST_ID.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("%s %s %s failed", request_id, scope["method"], scope["path"])
            if started:
                raise
            await fault(500, f"internal error ({request_id})")(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - t0
            method = scope["method"]
            route = route_template(scope)
            count, latency = _series(route, method, status)
            count.inc()
            latency.observe(seconds)
            log.info("%s %s %s %d %.1fms", request_id, method, scope["path"], status, seconds * 1000)


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="Whether the API can answer: its cache follows the store (no token needed)")
async def healthz(request: Request) -> JSONResponse:
    cache = request.app.state.cache
    ok = bool(cache.synced and not cache.down)
    body = {"status": "ok" if ok else "unavailable", "store_synced": bool(cache.synced), "store_down": bool(cache.down)}
    return JSONResponse(body, status_code=200 if ok else 503)
