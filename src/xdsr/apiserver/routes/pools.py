"""Pools: /v2/lbaas/pools."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from xdsr.api import schemas as s
from xdsr.apiserver import document, ops, render
from xdsr.apiserver.errors import ApiError
from xdsr.apiserver.listing import ListQuery, filters
from xdsr.apiserver.routes.common import READ, WRITE, CallerDep, ServiceDep, fields_param, list_params, one

router = APIRouter()

POOL_FILTERS = filters(s.PoolOut)
# Query names that filter on a relation rather than an attribute.
POOL_RELATIONS = {"loadbalancer_id": "_lb", "listener_id": "_listener", "health_monitor_id": "_hm"}


@router.get(
    "/pools",
    tags=["pools"],
    response_model=None,
    responses={200: {"model": s.PoolsRoot}, **READ},
    openapi_extra={"parameters": list_params(POOL_FILTERS, POOL_RELATIONS, s.PoolOut)},
)
async def list_pools(request: Request, caller: CallerDep, service: ServiceDep) -> JSONResponse:
    q = ListQuery(request.query_params, POOL_FILTERS, POOL_RELATIONS)
    objs = []
    for lb in service.visible_lbs(caller):
        for p in lb.pools:
            users = document.pool_listeners(lb, p.id)
            objs.append(
                {
                    **render.pool(lb, service.status(lb), p),
                    "_lb": lb.id,
                    "_listener": users[0].id if users else None,
                    "_hm": p.healthmonitor_id,
                }
            )
    return JSONResponse(q.apply(objs, request.url, "pools"))


@router.post(
    "/pools", tags=["pools"], status_code=201, response_model=None, responses={201: {"model": s.PoolRoot}, **WRITE}
)
async def create_pool(
    request: Request, caller: CallerDep, service: ServiceDep, body: s.PoolCreateRequest
) -> JSONResponse:
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
    return one(request, "pool", render.pool(lb, service.status(lb), pool), 201)


@router.get(
    "/pools/{pool_id}",
    tags=["pools"],
    response_model=None,
    responses={200: {"model": s.PoolRoot}, **READ},
    openapi_extra={"parameters": [fields_param(s.PoolOut)]},
)
async def get_pool(request: Request, caller: CallerDep, service: ServiceDep, pool_id: str) -> JSONResponse:
    lb = service.owner(caller, "pool", pool_id)
    pool = document.find_pool(lb, pool_id)
    assert pool is not None
    return one(request, "pool", render.pool(lb, service.status(lb), pool))


@router.put("/pools/{pool_id}", tags=["pools"], response_model=None, responses={200: {"model": s.PoolRoot}, **WRITE})
async def update_pool(
    request: Request, caller: CallerDep, service: ServiceDep, pool_id: str, body: s.PoolUpdateRequest
) -> JSONResponse:
    lb = service.owner(caller, "pool", pool_id)
    lb, pool = await service.edit(
        caller, lb.id, lambda e: ops.update_pool(e, pool_id, body.pool), missing=("pool", pool_id)
    )
    return one(request, "pool", render.pool(lb, service.status(lb), pool))


@router.delete("/pools/{pool_id}", tags=["pools"], status_code=204, response_class=Response, responses=WRITE)
async def delete_pool(caller: CallerDep, service: ServiceDep, pool_id: str) -> Response:
    lb = service.owner(caller, "pool", pool_id)
    await service.edit(caller, lb.id, lambda e: ops.delete_pool(e, pool_id), missing=("pool", pool_id))
    return Response(status_code=204)
