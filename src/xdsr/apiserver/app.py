"""The FastAPI application: Octavia's v2 load-balancer API, the subset L2DSR
can serve (docs/api.md).

    create_app(store, tokens) -> FastAPI

The routes live in routes/, one module per resource. The app's lifespan
starts the cache (list + watch of the store); run it with uvicorn, or
in-process with ApiServer (server.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from xdsr import __version__
from xdsr.apiserver.auth import UNAUTHENTICATED, Token, TokenRegistry
from xdsr.apiserver.cache import Cache
from xdsr.apiserver.errors import fault_body, install_handlers
from xdsr.apiserver.metrics import RequestLog
from xdsr.apiserver.metrics import router as metrics_router
from xdsr.apiserver.networks import Networks
from xdsr.apiserver.ops import MAX_DOC_BYTES
from xdsr.apiserver.routes import (
    compat,
    healthmonitors,
    lbns,
    listeners,
    loadbalancers,
    members,
    networking,
    pools,
    providers,
    quotas,
    statuses,
    tree,
    versions,
)
from xdsr.apiserver.service import Service
from xdsr.store.base import Store
from xdsr.web.guard import Authenticate, BodyLimit, header

# --- path aliases ---------------------------------------------------------------------

RESOURCES = ("loadbalancers", "listeners", "pools", "healthmonitors", "l7policies", "providers", "quotas")


class PathAliases:
    """Octavia also answers under /v2.0 and without /lbaas (/v2/loadbalancers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def rewrite(path: str) -> str:
        if path == "/v2.0" or path.startswith("/v2.0/"):
            path = "/v2" + path[len("/v2.0") :]
        parts = path.split("/")
        if len(parts) > 2 and parts[1] == "v2" and parts[2] in RESOURCES:
            path = "/v2/lbaas" + path[len("/v2") :]
        return path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            new = self.rewrite(path)
            if new != path:
                raw = scope.get("raw_path") or path.encode()
                scope = {**scope, "path": new, "raw_path": new.encode() if raw == path.encode() else raw}
        await self.app(scope, receive, send)


# The largest request body read: a fully populated create of the largest
# document the store takes (ops.MAX_DOC_BYTES) is smaller than its stored
# form (no statuses, times or ids), so twice that leaves room to spare.
MAX_BODY_BYTES = 2 * MAX_DOC_BYTES


def protected(path: str) -> bool:
    """Everything but version discovery (/, /v2), openapi.json, /healthz and
    /metrics needs a token, as in Octavia (and the Networking lookups, as in Neutron)."""
    return path in ("/v2/lbaas", "/v2.0") or path.startswith(("/v2/lbaas/", "/v2/octavia/", "/v2.0/"))


DESCRIPTION = """\
The subset of OpenStack Octavia's v2 load-balancer API that an L2
direct-server-return load balancer can serve: same paths, attribute names,
wrappers and status values, so openstacksdk and Octavia provider drivers work
unchanged. Requests L2DSR cannot honour are refused with a 400 that says why.
Authenticate with `X-Auth-Token`. See docs/api.md.
"""


def create_app(store: Store, tokens: Iterable[Token] | TokenRegistry, networks: Networks | None = None) -> FastAPI:
    registry = tokens if isinstance(tokens, TokenRegistry) else TokenRegistry(tokens)
    cache = Cache(store)
    service = Service(store, cache, networks or Networks())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        cache.start()
        try:
            yield
        finally:
            await cache.stop()

    app = FastAPI(
        title="xdsr load-balancer API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.cache = cache
    app.state.tokens = registry
    install_handlers(app)

    def check(scope: Scope) -> object | None:
        token = header(scope, b"x-auth-token")
        return registry.authenticate(token.decode("latin-1") if token is not None else None)

    # The last added runs first: aliases (they give the request a new scope),
    # the request log (its request id on every answer, refusals included; it
    # reads the route template from the scope the router fills), then the
    # token, then the size (guard.py).
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, render=fault_body)
    app.add_middleware(Authenticate, check=check, protected=protected, render=fault_body, message=UNAUTHENTICATED)
    app.add_middleware(RequestLog)
    app.add_middleware(PathAliases)
    app.include_router(versions.router)
    app.include_router(metrics_router)
    for resource in (
        loadbalancers,
        listeners,
        pools,
        members,
        healthmonitors,
        statuses,
        providers,
        quotas,
        tree,
        lbns,
        compat,
    ):
        app.include_router(resource.router, prefix="/v2/lbaas")
    app.include_router(compat.amphorae, prefix="/v2/octavia")
    app.include_router(networking.router, prefix="/v2")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            # Invalid input is a 400 here, as in Octavia: drop FastAPI's 422.
            for item in schema.get("paths", {}).values():
                for op in item.values():
                    op.get("responses", {}).pop("422", None)
            comps = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                comps.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
