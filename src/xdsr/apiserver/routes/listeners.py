"""Listeners: /v2/lbaas/listeners, with their counters."""

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

LISTENER_FILTERS = filters(s.ListenerOut)
# Query names that filter on a relation rather than an attribute.
LISTENER_RELATIONS = {"loadbalancer_id": "_lb"}


@router.get(
    "/listeners",
    tags=["listeners"],
    response_model=None,
    responses={200: {"model": s.ListenersRoot}, **READ},
    openapi_extra={"parameters": list_params(LISTENER_FILTERS, LISTENER_RELATIONS, s.ListenerOut)},
)
async def list_listeners(request: Request, caller: CallerDep, service: ServiceDep) -> JSONResponse:
    q = ListQuery(request.query_params, LISTENER_FILTERS, LISTENER_RELATIONS)
    objs = [
        {**render.listener(lb, service.status(lb), li), "_lb": lb.id}
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
async def create_listener(
    request: Request, caller: CallerDep, service: ServiceDep, body: s.ListenerCreateRequest
) -> JSONResponse:
    b = body.listener
    lb_id = str(b.loadbalancer_id)
    lb = service.lb(caller, lb_id, "listener.loadbalancer_id")
    service.check_ids(caller, ops.requested_ids(b, "listener", "listener"))
    project, stamp = service.child_project(lb, b.project_id, "listener.project_id"), ops.now()
    li = ops.build_listener(b, project, stamp)
    # Octavia also creates a listener and its default pool in one call.
    inline = ops.build_pool(b.default_pool, project, stamp) if b.default_pool is not None else None
    if inline is not None and b.default_pool_id is not None:
        raise ApiError(400, "give default_pool_id or default_pool, not both", "listener.default_pool")
    lb, li = await service.edit(caller, lb_id, lambda e: ops.create_listener(e, li, inline))
    return one(request, "listener", render.listener(lb, service.status(lb), li), 201)


@router.get(
    "/listeners/{listener_id}",
    tags=["listeners"],
    response_model=None,
    responses={200: {"model": s.ListenerRoot}, **READ},
    openapi_extra={"parameters": [fields_param(s.ListenerOut)]},
)
async def get_listener(request: Request, caller: CallerDep, service: ServiceDep, listener_id: str) -> JSONResponse:
    lb = service.owner(caller, "listener", listener_id)
    li = document.find_listener(lb, listener_id)
    assert li is not None
    return one(request, "listener", render.listener(lb, service.status(lb), li))


@router.put(
    "/listeners/{listener_id}",
    tags=["listeners"],
    response_model=None,
    responses={200: {"model": s.ListenerRoot}, **WRITE},
)
async def update_listener(
    request: Request, caller: CallerDep, service: ServiceDep, listener_id: str, body: s.ListenerUpdateRequest
) -> JSONResponse:
    lb = service.owner(caller, "listener", listener_id)
    lb, li = await service.edit(
        caller,
        lb.id,
        lambda e: ops.update_listener(e, listener_id, body.listener),
        missing=("listener", listener_id),
    )
    return one(request, "listener", render.listener(lb, service.status(lb), li))


@router.delete(
    "/listeners/{listener_id}", tags=["listeners"], status_code=204, response_class=Response, responses=WRITE
)
async def delete_listener(caller: CallerDep, service: ServiceDep, listener_id: str) -> Response:
    lb = service.owner(caller, "listener", listener_id)
    await service.edit(caller, lb.id, lambda e: ops.delete_listener(e, listener_id), missing=("listener", listener_id))
    return Response(status_code=204)


@router.get(
    "/listeners/{listener_id}/stats",
    tags=["listeners"],
    response_model=None,
    responses={200: {"model": s.StatsRoot}, **READ},
    summary="The listener's counters",
)
async def get_listener_stats(caller: CallerDep, service: ServiceDep, listener_id: str) -> JSONResponse:
    lb = service.owner(caller, "listener", listener_id)
    return JSONResponse(render.stats(service.status(lb), [listener_id]))
