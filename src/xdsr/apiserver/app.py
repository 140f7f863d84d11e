"""The FastAPI application: Octavia's v2 load-balancer API, the subset L2DSR
can serve (docs/api.md).

    create_app(store, tokens) -> FastAPI

The app's lifespan starts the cache (list + watch of the store); run it with
uvicorn, or in-process with ApiServer (server.py).
"""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types, CallerDep among them, as objects.
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Receive, Scope, Send

from xdsr import __version__
from xdsr.api import l2dsr
from xdsr.api import schemas as s
from xdsr.apiserver import ops, render
from xdsr.apiserver.auth import Caller, Token, TokenRegistry
from xdsr.apiserver.cache import Cache
from xdsr.apiserver.errors import ApiError, Fault, install_handlers
from xdsr.apiserver.listing import PAGING, ListQuery
from xdsr.apiserver.networks import Networks
from xdsr.apiserver.service import Service
from xdsr.apiserver.tree import tree_router
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.store.base import Store

# --- filters: the attributes each list filters and sorts on, and their types ---

_COMMON = {
    "id": str,
    "name": str,
    "provisioning_status": str,
    "operating_status": str,
    "admin_state_up": bool,
    "project_id": str,
    "created_at": str,
    "updated_at": str,
}
LB_FILTERS = {
    **_COMMON,
    "description": str,
    "vip_address": str,
    "vip_port_id": str,
    "vip_subnet_id": str,
    "vip_network_id": str,
    "vip_qos_policy_id": str,
    "vip_vnic_type": str,
    "provider": str,
    "flavor_id": str,
    "availability_zone": str,
    "lbn_group": str,
}
LISTENER_FILTERS = {
    **_COMMON,
    "description": str,
    "protocol": str,
    "protocol_port": int,
    "connection_limit": int,
    "default_pool_id": str,
    "timeout_client_data": int,
    "timeout_member_connect": int,
    "timeout_member_data": int,
    "timeout_tcp_inspect": int,
    "default_tls_container_ref": str,
    "client_ca_tls_container_ref": str,
    "client_authentication": str,
    "client_crl_container_ref": str,
    "tls_ciphers": str,
    "hsts_max_age": int,
    "hsts_include_subdomains": bool,
    "hsts_preload": bool,
}
POOL_FILTERS = {
    **_COMMON,
    "description": str,
    "protocol": str,
    "lb_algorithm": str,
    "healthmonitor_id": str,
    "tls_enabled": bool,
    "tls_container_ref": str,
    "ca_tls_container_ref": str,
    "crl_container_ref": str,
    "tls_ciphers": str,
    "table_size": int,
}
MEMBER_FILTERS = {
    **_COMMON,
    "address": str,
    "protocol_port": int,
    "weight": int,
    "backup": bool,
    "subnet_id": str,
    "monitor_address": str,
    "monitor_port": int,
    "vnic_type": str,
    "mac_address": str,
}
HM_FILTERS = {
    **_COMMON,
    "type": str,
    "delay": int,
    "timeout": int,
    "max_retries": int,
    "max_retries_down": int,
    "http_method": str,
    "url_path": str,
    "expected_codes": str,
}
# Query names that filter on a relation rather than an attribute.
LISTENER_RELATIONS = {"loadbalancer_id": "_lb"}
POOL_RELATIONS = {"loadbalancer_id": "_lb", "listener_id": "_listener", "health_monitor_id": "_hm"}
HM_RELATIONS = {"pool_id": "_pool"}

_TYPES = {str: "string", int: "integer", bool: "boolean"}


def _fields_param(out: type[s.BaseModel]) -> dict[str, Any]:
    return {
        "name": "fields",
        "in": "query",
        "required": False,
        "description": "Return only these attributes.",
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string", "enum": sorted(out.model_fields)}},
    }


def _list_params(filters: dict[str, type], relations: dict[str, str], out: type[s.BaseModel]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "query", "required": False, "schema": {"type": _TYPES[t]}} for name, t in filters.items()
    ]
    params += [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in relations]
    params += [
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
        {"name": "marker", "in": "query", "required": False, "schema": {"type": "string"}},
        {
            "name": "sort",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "key[:asc|desc],...",
        },
        {"name": "sort_key", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "sort_dir", "in": "query", "required": False, "schema": {"type": "string", "enum": ["asc", "desc"]}},
        {"name": "page_reverse", "in": "query", "required": False, "schema": {"type": "boolean"}},
        _fields_param(out),
    ]
    params += [
        {"name": t, "in": "query", "required": False, "schema": {"type": "string"}, "description": "comma-separated"}
        for t in ("tags", "tags-any", "not-tags", "not-tags-any")
    ]
    assert not set(filters) & set(PAGING)
    return params


def _faults(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "Invalid request: faultstring names the field and says why",
        401: "No or unknown X-Auth-Token",
        403: "Not allowed for this token",
        404: "No such object (or another project's)",
        409: "Conflicts with the current state",
        413: "The load balancer's document would be too large for the store",
        503: "The store is unreachable; nothing was changed",
    }
    return {code: {"model": Fault, "description": what[code]} for code in codes}


READ = _faults(400, 401, 404, 503)
WRITE = _faults(400, 401, 403, 404, 409, 413, 503)


def _one(request: Request, key: str, obj: dict[str, Any], status: int = 200) -> JSONResponse:
    fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
    if fields:
        obj = {k: v for k, v in obj.items() if k in fields}
    return JSONResponse({key: obj}, status_code=status)


# --- path aliases ---------------------------------------------------------------------

RESOURCES = ("loadbalancers", "listeners", "pools", "healthmonitors", "l7policies", "providers")


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


# --- the application -----------------------------------------------------------------------

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
    install_handlers(app)
    app.add_middleware(PathAliases)
    app.include_router(_versions_router())
    app.include_router(_lbaas_router(service, registry), prefix="/v2/lbaas")
    app.include_router(tree_router(service, registry), prefix="/v2/lbaas")

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


VERSIONS = [
    ("v2.0", "2016-12-11T00:00:00Z"),
    ("v2.1", "2018-04-20T00:00:00Z"),
    ("v2.2", "2018-07-31T00:00:00Z"),
    ("v2.3", "2018-12-18T00:00:00Z"),
    ("v2.4", "2018-12-19T00:00:00Z"),
    ("v2.5", "2019-01-21T00:00:00Z"),
    ("v2.6", "2019-01-25T00:00:00Z"),
    ("v2.7", "2018-01-25T12:00:00Z"),
    ("v2.8", "2019-02-12T00:00:00Z"),
    ("v2.9", "2019-03-04T00:00:00Z"),
    ("v2.10", "2019-03-05T00:00:00Z"),
    ("v2.11", "2019-06-24T00:00:00Z"),
    ("v2.12", "2019-09-11T00:00:00Z"),
    ("v2.13", "2019-09-13T00:00:00Z"),
    ("v2.14", "2019-11-10T00:00:00Z"),
    ("v2.15", "2020-03-10T00:00:00Z"),
    ("v2.16", "2020-03-15T00:00:00Z"),
    ("v2.17", "2020-04-29T00:00:00Z"),
    ("v2.18", "2020-04-29T01:00:00Z"),
    ("v2.19", "2020-05-12T00:00:00Z"),
    ("v2.20", "2020-08-02T00:00:00Z"),
    ("v2.21", "2020-09-03T00:00:00Z"),
    ("v2.22", "2020-09-04T00:00:00Z"),
    ("v2.23", "2020-09-07T00:00:00Z"),
    ("v2.24", "2020-10-15T00:00:00Z"),
    ("v2.25", "2021-10-02T00:00:00Z"),
    ("v2.26", "2022-08-29T00:00:00Z"),
]


def _versions_router() -> APIRouter:
    router = APIRouter(tags=["versions"])

    @router.get("/", response_model=s.Versions, summary="API versions (version discovery)")
    async def versions(request: Request) -> dict[str, Any]:
        base = str(request.base_url)
        if not base.endswith("/"):
            base += "/"
        return {
            "versions": [
                {
                    "id": vid,
                    "status": "CURRENT" if i == len(VERSIONS) - 1 else "SUPPORTED",
                    "updated": updated,
                    "links": [{"href": base + "v2", "rel": "self"}],
                }
                for i, (vid, updated) in enumerate(VERSIONS)
            ]
        }

    @router.get("/v2", response_model=str, summary='The v2 API (answers "v2", as Octavia)')
    async def v2() -> str:
        return "v2"

    return router


def _lbaas_router(service: Service, registry: TokenRegistry) -> APIRouter:
    api_key = APIKeyHeader(name="X-Auth-Token", auto_error=False, description="A token from the tokens file")

    async def authenticate(token: Annotated[str | None, Depends(api_key)]) -> Caller:
        caller = registry.authenticate(token)
        if caller is None:
            raise ApiError(401, "authentication required: send a known token in the X-Auth-Token header")
        await service.ready()
        return caller

    CallerDep = Annotated[Caller, Depends(authenticate)]
    router = APIRouter()

    def st(lb: LoadBalancer) -> LoadBalancerStatus | None:
        return service.status(lb)

    # --- load balancers ---

    @router.get(
        "/loadbalancers",
        tags=["loadbalancers"],
        response_model=None,
        responses={200: {"model": s.LoadBalancersRoot}, **READ},
        openapi_extra={"parameters": _list_params(LB_FILTERS, {}, s.LoadBalancerOut)},
    )
    async def list_loadbalancers(request: Request, caller: CallerDep) -> JSONResponse:
        q = ListQuery(request.query_params, LB_FILTERS)
        objs = [render.loadbalancer(lb, st(lb)) for lb in service.visible_lbs(caller)]
        return JSONResponse(q.apply(objs, request.url, "loadbalancers"))

    @router.post(
        "/loadbalancers",
        tags=["loadbalancers"],
        status_code=201,
        response_model=None,
        responses={201: {"model": s.LoadBalancerCreatedRoot}, **WRITE},
    )
    async def create_loadbalancer(
        request: Request, caller: CallerDep, body: s.LoadBalancerCreateRequest
    ) -> JSONResponse:
        b = body.loadbalancer
        project = service.project_for(caller, b.project_id, "loadbalancer.project_id")
        service.check_ids(caller, ops.requested_ids(b, "loadbalancer", "loadbalancer"))
        lb = await service.create_lb(caller, service.with_vip_segment(b, ops.build_loadbalancer(b, project, ops.now())))
        full = bool(b.listeners or b.pools)
        return _one(request, "loadbalancer", render.loadbalancer(lb, st(lb), full=full), 201)

    @router.get(
        "/loadbalancers/{loadbalancer_id}",
        tags=["loadbalancers"],
        response_model=None,
        responses={200: {"model": s.LoadBalancerRoot}, **READ},
        openapi_extra={"parameters": [_fields_param(s.LoadBalancerOut)]},
    )
    async def get_loadbalancer(request: Request, caller: CallerDep, loadbalancer_id: str) -> JSONResponse:
        lb = service.lb(caller, loadbalancer_id)
        return _one(request, "loadbalancer", render.loadbalancer(lb, st(lb)))

    @router.put(
        "/loadbalancers/{loadbalancer_id}",
        tags=["loadbalancers"],
        response_model=None,
        responses={200: {"model": s.LoadBalancerRoot}, **WRITE},
    )
    async def update_loadbalancer(
        request: Request, caller: CallerDep, loadbalancer_id: str, body: s.LoadBalancerUpdateRequest
    ) -> JSONResponse:
        service.lb(caller, loadbalancer_id)
        lb, _ = await service.edit(caller, loadbalancer_id, lambda e: ops.update_loadbalancer(e, body.loadbalancer))
        return _one(request, "loadbalancer", render.loadbalancer(lb, st(lb)))

    @router.delete(
        "/loadbalancers/{loadbalancer_id}",
        tags=["loadbalancers"],
        status_code=204,
        response_class=Response,
        responses=WRITE,
    )
    async def delete_loadbalancer(caller: CallerDep, loadbalancer_id: str, cascade: bool = False) -> Response:
        await service.delete_lb(caller, loadbalancer_id, cascade)
        return Response(status_code=204)

    @router.get(
        "/loadbalancers/{loadbalancer_id}/status",
        tags=["loadbalancers"],
        response_model=None,
        responses={200: {"model": s.StatusRoot}, **READ},
        summary="The status tree: load balancer, listeners, their pools, members and health monitors",
    )
    async def get_status_tree(caller: CallerDep, loadbalancer_id: str) -> JSONResponse:
        lb = service.lb(caller, loadbalancer_id)
        return JSONResponse(render.status_tree(lb, st(lb)))

    @router.get("/loadbalancers/{loadbalancer_id}/statuses", include_in_schema=False)
    async def get_statuses(caller: CallerDep, loadbalancer_id: str) -> JSONResponse:
        lb = service.lb(caller, loadbalancer_id)
        return JSONResponse(render.status_tree(lb, st(lb)))

    @router.get(
        "/loadbalancers/{loadbalancer_id}/stats",
        tags=["loadbalancers"],
        response_model=None,
        responses={200: {"model": s.StatsRoot}, **READ},
        summary="Counters summed over the load balancer's listeners",
    )
    async def get_loadbalancer_stats(caller: CallerDep, loadbalancer_id: str) -> JSONResponse:
        lb = service.lb(caller, loadbalancer_id)
        return JSONResponse(render.stats(st(lb), [li.id for li in lb.listeners]))

    # --- listeners ---

    @router.get(
        "/listeners",
        tags=["listeners"],
        response_model=None,
        responses={200: {"model": s.ListenersRoot}, **READ},
        openapi_extra={"parameters": _list_params(LISTENER_FILTERS, LISTENER_RELATIONS, s.ListenerOut)},
    )
    async def list_listeners(request: Request, caller: CallerDep) -> JSONResponse:
        q = ListQuery(request.query_params, LISTENER_FILTERS, LISTENER_RELATIONS)
        objs = [
            {**render.listener(lb, st(lb), li), "_lb": lb.id}
            for lb in service.visible_lbs(caller)
            for li in lb.listeners
        ]
        return JSONResponse(q.apply(objs, request.url, "listeners"))

    @router.post(
        "/listeners",
        tags=["listeners"],
        status_code=201,
        response_model=None,
        responses={201: {"model": s.ListenerRoot}, **WRITE},
    )
    async def create_listener(request: Request, caller: CallerDep, body: s.ListenerCreateRequest) -> JSONResponse:
        b = body.listener
        lb_id = str(b.loadbalancer_id)
        lb = service.lb(caller, lb_id, "listener.loadbalancer_id")
        service.check_ids(caller, ops.requested_ids(b, "listener", "listener"))
        project, stamp = service.child_project(lb, b.project_id, "listener.project_id"), ops.now()
        li = ops.build_listener(b, project, stamp)
        li.default_pool_id = str(b.default_pool_id) if b.default_pool_id else None
        # Octavia also creates a listener and its default pool in one call.
        inline = ops.build_pool(b.default_pool, project, stamp) if b.default_pool is not None else None
        if inline is not None and b.default_pool_id is not None:
            raise ApiError(400, "give default_pool_id or default_pool, not both", "listener.default_pool")
        lb, li = await service.edit(caller, lb_id, lambda e: ops.create_listener(e, li, inline))
        return _one(request, "listener", render.listener(lb, st(lb), li), 201)

    @router.get(
        "/listeners/{listener_id}",
        tags=["listeners"],
        response_model=None,
        responses={200: {"model": s.ListenerRoot}, **READ},
        openapi_extra={"parameters": [_fields_param(s.ListenerOut)]},
    )
    async def get_listener(request: Request, caller: CallerDep, listener_id: str) -> JSONResponse:
        lb = service.owner(caller, "listener", listener_id)
        li = ops.find_listener(lb, listener_id)
        assert li is not None
        return _one(request, "listener", render.listener(lb, st(lb), li))

    @router.put(
        "/listeners/{listener_id}",
        tags=["listeners"],
        response_model=None,
        responses={200: {"model": s.ListenerRoot}, **WRITE},
    )
    async def update_listener(
        request: Request, caller: CallerDep, listener_id: str, body: s.ListenerUpdateRequest
    ) -> JSONResponse:
        lb = service.owner(caller, "listener", listener_id)
        lb, li = await service.edit(
            caller,
            lb.id,
            lambda e: ops.update_listener(e, listener_id, body.listener),
            missing=("listener", listener_id),
        )
        return _one(request, "listener", render.listener(lb, st(lb), li))

    @router.delete(
        "/listeners/{listener_id}", tags=["listeners"], status_code=204, response_class=Response, responses=WRITE
    )
    async def delete_listener(caller: CallerDep, listener_id: str) -> Response:
        lb = service.owner(caller, "listener", listener_id)
        await service.edit(
            caller, lb.id, lambda e: ops.delete_listener(e, listener_id), missing=("listener", listener_id)
        )
        return Response(status_code=204)

    @router.get(
        "/listeners/{listener_id}/stats",
        tags=["listeners"],
        response_model=None,
        responses={200: {"model": s.StatsRoot}, **READ},
        summary="The listener's counters",
    )
    async def get_listener_stats(caller: CallerDep, listener_id: str) -> JSONResponse:
        lb = service.owner(caller, "listener", listener_id)
        return JSONResponse(render.stats(st(lb), [listener_id]))

    # --- pools ---

    @router.get(
        "/pools",
        tags=["pools"],
        response_model=None,
        responses={200: {"model": s.PoolsRoot}, **READ},
        openapi_extra={"parameters": _list_params(POOL_FILTERS, POOL_RELATIONS, s.PoolOut)},
    )
    async def list_pools(request: Request, caller: CallerDep) -> JSONResponse:
        q = ListQuery(request.query_params, POOL_FILTERS, POOL_RELATIONS)
        objs = []
        for lb in service.visible_lbs(caller):
            for p in lb.pools:
                users = render.pool_listeners(lb, p.id)
                objs.append(
                    {
                        **render.pool(lb, st(lb), p),
                        "_lb": lb.id,
                        "_listener": users[0].id if users else None,
                        "_hm": p.healthmonitor_id,
                    }
                )
        return JSONResponse(q.apply(objs, request.url, "pools"))

    @router.post(
        "/pools", tags=["pools"], status_code=201, response_model=None, responses={201: {"model": s.PoolRoot}, **WRITE}
    )
    async def create_pool(request: Request, caller: CallerDep, body: s.PoolCreateRequest) -> JSONResponse:
        b = body.pool
        listener_id = str(b.listener_id) if b.listener_id else None
        if listener_id is not None:
            lb = service.owner(caller, "listener", listener_id, "pool.listener_id")
            if b.loadbalancer_id is not None and str(b.loadbalancer_id) != lb.id:
                raise ApiError(400, f"listener {listener_id} belongs to load balancer {lb.id}", "pool.loadbalancer_id")
        elif b.loadbalancer_id is not None:
            lb = service.lb(caller, str(b.loadbalancer_id), "pool.loadbalancer_id")
        else:
            raise ApiError(400, "a pool needs loadbalancer_id or listener_id", "pool.loadbalancer_id")
        service.check_ids(caller, ops.requested_ids(b, "pool", "pool"))
        pool, hm = ops.build_pool(b, service.child_project(lb, b.project_id, "pool.project_id"), ops.now())
        lb, pool = await service.edit(caller, lb.id, lambda e: ops.create_pool(e, pool, hm, listener_id))
        return _one(request, "pool", render.pool(lb, st(lb), pool), 201)

    @router.get(
        "/pools/{pool_id}",
        tags=["pools"],
        response_model=None,
        responses={200: {"model": s.PoolRoot}, **READ},
        openapi_extra={"parameters": [_fields_param(s.PoolOut)]},
    )
    async def get_pool(request: Request, caller: CallerDep, pool_id: str) -> JSONResponse:
        lb = service.owner(caller, "pool", pool_id)
        pool = ops.find_pool(lb, pool_id)
        assert pool is not None
        return _one(request, "pool", render.pool(lb, st(lb), pool))

    @router.put(
        "/pools/{pool_id}", tags=["pools"], response_model=None, responses={200: {"model": s.PoolRoot}, **WRITE}
    )
    async def update_pool(request: Request, caller: CallerDep, pool_id: str, body: s.PoolUpdateRequest) -> JSONResponse:
        lb = service.owner(caller, "pool", pool_id)
        lb, pool = await service.edit(
            caller, lb.id, lambda e: ops.update_pool(e, pool_id, body.pool), missing=("pool", pool_id)
        )
        return _one(request, "pool", render.pool(lb, st(lb), pool))

    @router.delete("/pools/{pool_id}", tags=["pools"], status_code=204, response_class=Response, responses=WRITE)
    async def delete_pool(caller: CallerDep, pool_id: str) -> Response:
        lb = service.owner(caller, "pool", pool_id)
        await service.edit(caller, lb.id, lambda e: ops.delete_pool(e, pool_id), missing=("pool", pool_id))
        return Response(status_code=204)

    # --- members ---

    @router.get(
        "/pools/{pool_id}/members",
        tags=["members"],
        response_model=None,
        responses={200: {"model": s.MembersRoot}, **READ},
        openapi_extra={"parameters": _list_params(MEMBER_FILTERS, {}, s.MemberOut)},
    )
    async def list_members(request: Request, caller: CallerDep, pool_id: str) -> JSONResponse:
        q = ListQuery(request.query_params, MEMBER_FILTERS)
        lb = service.owner(caller, "pool", pool_id)
        pool = ops.find_pool(lb, pool_id)
        assert pool is not None
        objs = [render.member(lb, st(lb), m) for m in pool.members]
        return JSONResponse(q.apply(objs, request.url, "members"))

    @router.post(
        "/pools/{pool_id}/members",
        tags=["members"],
        status_code=201,
        response_model=None,
        responses={201: {"model": s.MemberRoot}, **WRITE},
    )
    async def create_member(
        request: Request, caller: CallerDep, pool_id: str, body: s.MemberCreateRequest
    ) -> JSONResponse:
        lb = service.owner(caller, "pool", pool_id)
        b = body.member
        service.check_ids(caller, ops.requested_ids(b, "member", "member"))
        m = ops.build_member(b, service.child_project(lb, b.project_id, "member.project_id"), ops.now())
        lb, m = await service.edit(caller, lb.id, lambda e: ops.create_member(e, pool_id, m), missing=("pool", pool_id))
        return _one(request, "member", render.member(lb, st(lb), m), 201)

    @router.put(
        "/pools/{pool_id}/members",
        tags=["members"],
        status_code=202,
        response_class=Response,
        responses={202: {"description": "Accepted: the pool now has exactly these members"}, **WRITE},
        summary="Replace the pool's members (Octavia's batch update)",
    )
    async def replace_members(
        caller: CallerDep, pool_id: str, body: s.MembersBatchRequest, additive_only: bool = False
    ) -> Response:
        lb = service.owner(caller, "pool", pool_id)
        service.check_ids(
            caller, [x for i, b in enumerate(body.members) for x in ops.requested_ids(b, "member", f"members[{i}]")]
        )
        stamp = ops.now()
        wanted = [
            (b, ops.build_member(b, service.child_project(lb, b.project_id, f"members[{i}].project_id"), stamp))
            for i, b in enumerate(body.members)
        ]
        await service.edit(
            caller,
            lb.id,
            lambda e: ops.replace_members(e, pool_id, wanted, additive_only),
            missing=("pool", pool_id),
        )
        return Response(status_code=202)

    @router.get(
        "/pools/{pool_id}/members/{member_id}",
        tags=["members"],
        response_model=None,
        responses={200: {"model": s.MemberRoot}, **READ},
        openapi_extra={"parameters": [_fields_param(s.MemberOut)]},
    )
    async def get_member(request: Request, caller: CallerDep, pool_id: str, member_id: str) -> JSONResponse:
        lb = service.owner(caller, "pool", pool_id)
        pool = ops.find_pool(lb, pool_id)
        m = ops.find_member(pool, member_id) if pool else None
        if m is None:
            raise ApiError(404, f"member {member_id} not found")
        return _one(request, "member", render.member(lb, st(lb), m))

    @router.put(
        "/pools/{pool_id}/members/{member_id}",
        tags=["members"],
        response_model=None,
        responses={200: {"model": s.MemberRoot}, **WRITE},
    )
    async def update_member(
        request: Request, caller: CallerDep, pool_id: str, member_id: str, body: s.MemberUpdateRequest
    ) -> JSONResponse:
        lb = service.owner(caller, "pool", pool_id)
        lb, m = await service.edit(
            caller,
            lb.id,
            lambda e: ops.update_member(e, pool_id, member_id, body.member),
            missing=("pool", pool_id),
        )
        return _one(request, "member", render.member(lb, st(lb), m))

    @router.delete(
        "/pools/{pool_id}/members/{member_id}",
        tags=["members"],
        status_code=204,
        response_class=Response,
        responses=WRITE,
    )
    async def delete_member(caller: CallerDep, pool_id: str, member_id: str) -> Response:
        lb = service.owner(caller, "pool", pool_id)
        await service.edit(caller, lb.id, lambda e: ops.delete_member(e, pool_id, member_id), missing=("pool", pool_id))
        return Response(status_code=204)

    # --- health monitors ---

    @router.get(
        "/healthmonitors",
        tags=["healthmonitors"],
        response_model=None,
        responses={200: {"model": s.HealthMonitorsRoot}, **READ},
        openapi_extra={"parameters": _list_params(HM_FILTERS, HM_RELATIONS, s.HealthMonitorOut)},
    )
    async def list_healthmonitors(request: Request, caller: CallerDep) -> JSONResponse:
        q = ListQuery(request.query_params, HM_FILTERS, HM_RELATIONS)
        objs = [
            {**render.healthmonitor(lb, st(lb), hm), "_pool": hm.pool_id}
            for lb in service.visible_lbs(caller)
            for hm in lb.healthmonitors
        ]
        return JSONResponse(q.apply(objs, request.url, "healthmonitors"))

    @router.post(
        "/healthmonitors",
        tags=["healthmonitors"],
        status_code=201,
        response_model=None,
        responses={201: {"model": s.HealthMonitorRoot}, **WRITE},
    )
    async def create_healthmonitor(
        request: Request, caller: CallerDep, body: s.HealthMonitorCreateRequest
    ) -> JSONResponse:
        b = body.healthmonitor
        pool_id = str(b.pool_id)
        lb = service.owner(caller, "pool", pool_id, "healthmonitor.pool_id")
        service.check_ids(caller, ops.requested_ids(b, "healthmonitor", "healthmonitor"))
        hm = ops.build_hm(b, pool_id, service.child_project(lb, b.project_id, "healthmonitor.project_id"), ops.now())
        lb, hm = await service.edit(caller, lb.id, lambda e: ops.create_hm(e, hm), missing=("pool", pool_id))
        return _one(request, "healthmonitor", render.healthmonitor(lb, st(lb), hm), 201)

    @router.get(
        "/healthmonitors/{healthmonitor_id}",
        tags=["healthmonitors"],
        response_model=None,
        responses={200: {"model": s.HealthMonitorRoot}, **READ},
        openapi_extra={"parameters": [_fields_param(s.HealthMonitorOut)]},
    )
    async def get_healthmonitor(request: Request, caller: CallerDep, healthmonitor_id: str) -> JSONResponse:
        lb = service.owner(caller, "healthmonitor", healthmonitor_id)
        hm = ops.find_hm(lb, healthmonitor_id)
        assert hm is not None
        return _one(request, "healthmonitor", render.healthmonitor(lb, st(lb), hm))

    @router.put(
        "/healthmonitors/{healthmonitor_id}",
        tags=["healthmonitors"],
        response_model=None,
        responses={200: {"model": s.HealthMonitorRoot}, **WRITE},
    )
    async def update_healthmonitor(
        request: Request, caller: CallerDep, healthmonitor_id: str, body: s.HealthMonitorUpdateRequest
    ) -> JSONResponse:
        lb = service.owner(caller, "healthmonitor", healthmonitor_id)
        lb, hm = await service.edit(
            caller,
            lb.id,
            lambda e: ops.update_hm(e, healthmonitor_id, body.healthmonitor),
            missing=("health monitor", healthmonitor_id),
        )
        return _one(request, "healthmonitor", render.healthmonitor(lb, st(lb), hm))

    @router.delete(
        "/healthmonitors/{healthmonitor_id}",
        tags=["healthmonitors"],
        status_code=204,
        response_class=Response,
        responses=WRITE,
    )
    async def delete_healthmonitor(caller: CallerDep, healthmonitor_id: str) -> Response:
        lb = service.owner(caller, "healthmonitor", healthmonitor_id)
        await service.edit(
            caller,
            lb.id,
            lambda e: ops.delete_hm(e, healthmonitor_id),
            missing=("health monitor", healthmonitor_id),
        )
        return Response(status_code=204)

    # --- xdsr: every status at once, for clients that follow them ---

    @router.get(
        "/xdsr/statuses",
        tags=["xdsr"],
        response_model=None,
        responses={200: {"model": s.SyncStatusesRoot}, **READ},
        summary="xdsr: the statuses of every visible load balancer and its objects, with counters",
        openapi_extra={
            "parameters": [
                {
                    "name": "loadbalancer_id",
                    "in": "query",
                    "required": False,
                    "description": "Only these load balancers (repeat the parameter for several).",
                    "style": "form",
                    "explode": True,
                    "schema": {"type": "array", "items": {"type": "string"}},
                }
            ]
        },
    )
    async def sync_statuses(request: Request, caller: CallerDep) -> JSONResponse:
        unknown = sorted(set(request.query_params) - {"loadbalancer_id"})
        if unknown:
            raise ApiError(400, f"unknown parameter {unknown[0]!r}; only loadbalancer_id filters", unknown[0])
        wanted = set(request.query_params.getlist("loadbalancer_id"))
        lbs = [lb for lb in service.visible_lbs(caller) if not wanted or lb.id in wanted]
        return JSONResponse({"statuses": [render.sync_statuses(lb, st(lb)) for lb in sorted(lbs, key=lambda x: x.id)]})

    # --- providers, and what L2DSR cannot serve ---

    @router.get("/providers", tags=["providers"], responses=READ, summary="The one provider: xdsr")
    async def list_providers(caller: CallerDep) -> dict[str, Any]:
        return {"providers": [{"name": "xdsr", "description": "xdsr: XDP L2 direct-server-return load balancer"}]}

    @router.api_route(
        "/l7policies{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False
    )
    async def l7policies(rest: str) -> Response:
        raise ApiError(400, l2dsr.L7, "l7policies")

    return router
