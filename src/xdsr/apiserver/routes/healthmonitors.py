"""Health monitors: /v2/lbaas/healthmonitors."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from xdsr.api import schemas as s
from xdsr.apiserver import document, ops, render
from xdsr.apiserver.listing import ListQuery, filters
from xdsr.apiserver.routes.common import READ, WRITE, CallerDep, ServiceDep, fields_param, list_params, one

router = APIRouter()

HM_FILTERS = filters(s.HealthMonitorOut)
# Query names that filter on a relation rather than an attribute.
HM_RELATIONS = {"pool_id": "_pool"}


@router.get(
    "/healthmonitors",
    tags=["healthmonitors"],
    response_model=None,
    responses={200: {"model": s.HealthMonitorsRoot}, **READ},
    openapi_extra={"parameters": list_params(HM_FILTERS, HM_RELATIONS, s.HealthMonitorOut)},
)
async def list_healthmonitors(request: Request, caller: CallerDep, service: ServiceDep) -> JSONResponse:
    q = ListQuery(request.query_params, HM_FILTERS, HM_RELATIONS)
    objs = [
        {**render.healthmonitor(lb, service.status(lb), hm), "_pool": hm.pool_id}
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
    request: Request, caller: CallerDep, service: ServiceDep, body: s.HealthMonitorCreateRequest
) -> JSONResponse:
    b = body.healthmonitor
    pool_id = str(b.pool_id)
    lb = service.owner(caller, "pool", pool_id, "healthmonitor.pool_id")
    service.check_ids(caller, ops.requested_ids(b, "healthmonitor", "healthmonitor"))
    hm = ops.build_hm(b, pool_id, service.child_project(lb, b.project_id, "healthmonitor.project_id"), ops.now())
    lb, hm = await service.edit(caller, lb.id, lambda e: ops.create_hm(e, hm), missing=("pool", pool_id))
    return one(request, "healthmonitor", render.healthmonitor(lb, service.status(lb), hm), 201)


@router.get(
    "/healthmonitors/{healthmonitor_id}",
    tags=["healthmonitors"],
    response_model=None,
    responses={200: {"model": s.HealthMonitorRoot}, **READ},
    openapi_extra={"parameters": [fields_param(s.HealthMonitorOut)]},
)
async def get_healthmonitor(
    request: Request, caller: CallerDep, service: ServiceDep, healthmonitor_id: str
) -> JSONResponse:
    lb = service.owner(caller, "healthmonitor", healthmonitor_id)
    hm = document.find_hm(lb, healthmonitor_id)
    assert hm is not None
    return one(request, "healthmonitor", render.healthmonitor(lb, service.status(lb), hm))


@router.put(
    "/healthmonitors/{healthmonitor_id}",
    tags=["healthmonitors"],
    response_model=None,
    responses={200: {"model": s.HealthMonitorRoot}, **WRITE},
)
async def update_healthmonitor(
    request: Request, caller: CallerDep, service: ServiceDep, healthmonitor_id: str, body: s.HealthMonitorUpdateRequest
) -> JSONResponse:
    lb = service.owner(caller, "healthmonitor", healthmonitor_id)
    lb, hm = await service.edit(
        caller,
        lb.id,
        lambda e: ops.update_hm(e, healthmonitor_id, body.healthmonitor),
        missing=("health monitor", healthmonitor_id),
    )
    return one(request, "healthmonitor", render.healthmonitor(lb, service.status(lb), hm))


@router.delete(
    "/healthmonitors/{healthmonitor_id}",
    tags=["healthmonitors"],
    status_code=204,
    response_class=Response,
    responses=WRITE,
)
async def delete_healthmonitor(caller: CallerDep, service: ServiceDep, healthmonitor_id: str) -> Response:
    lb = service.owner(caller, "healthmonitor", healthmonitor_id)
    await service.edit(
        caller,
        lb.id,
        lambda e: ops.delete_hm(e, healthmonitor_id),
        missing=("health monitor", healthmonitor_id),
    )
    return Response(status_code=204)
