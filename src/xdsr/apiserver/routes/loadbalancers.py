"""Load balancers: /v2/lbaas/loadbalancers, with their status tree and counters."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from xdsr.api import schemas as s
from xdsr.apiserver import ops, render
from xdsr.apiserver.listing import ListQuery, filters
from xdsr.apiserver.routes.common import READ, WRITE, CallerDep, ServiceDep, fields_param, list_params, one

router = APIRouter()

LB_FILTERS = filters(s.LoadBalancerOut)


@router.get(
    "/loadbalancers",
    tags=["loadbalancers"],
    response_model=None,
    responses={200: {"model": s.LoadBalancersRoot}, **READ},
    openapi_extra={"parameters": list_params(LB_FILTERS, {}, s.LoadBalancerOut)},
)
async def list_loadbalancers(request: Request, caller: CallerDep, service: ServiceDep) -> JSONResponse:
    q = ListQuery(request.query_params, LB_FILTERS)
    objs = [render.loadbalancer(lb, service.status(lb)) for lb in service.visible_lbs(caller)]
    return JSONResponse(q.apply(objs, request.url, "loadbalancers"))


@router.post(
    "/loadbalancers",
    tags=["loadbalancers"],
    status_code=201,
    response_model=None,
    responses={201: {"model": s.LoadBalancerCreatedRoot}, **WRITE},
)
async def create_loadbalancer(
    request: Request, caller: CallerDep, service: ServiceDep, body: s.LoadBalancerCreateRequest
) -> JSONResponse:
    b = body.loadbalancer
    project = service.project_for(caller, b.project_id, "loadbalancer.project_id")
    service.check_ids(caller, ops.requested_ids(b, "loadbalancer", "loadbalancer"))
    lb = await service.create_lb(caller, service.with_segments(b, ops.build_loadbalancer(b, project, ops.now())))
    full = bool(b.listeners or b.pools)
    return one(request, "loadbalancer", render.loadbalancer(lb, service.status(lb), full=full), 201)


@router.get(
    "/loadbalancers/{loadbalancer_id}",
    tags=["loadbalancers"],
    response_model=None,
    responses={200: {"model": s.LoadBalancerRoot}, **READ},
    openapi_extra={"parameters": [fields_param(s.LoadBalancerOut)]},
)
async def get_loadbalancer(
    request: Request, caller: CallerDep, service: ServiceDep, loadbalancer_id: str
) -> JSONResponse:
    lb = service.lb(caller, loadbalancer_id)
    return one(request, "loadbalancer", render.loadbalancer(lb, service.status(lb)))


@router.put(
    "/loadbalancers/{loadbalancer_id}",
    tags=["loadbalancers"],
    response_model=None,
    responses={200: {"model": s.LoadBalancerRoot}, **WRITE},
)
async def update_loadbalancer(
    request: Request, caller: CallerDep, service: ServiceDep, loadbalancer_id: str, body: s.LoadBalancerUpdateRequest
) -> JSONResponse:
    service.lb(caller, loadbalancer_id)
    lb, _ = await service.edit(caller, loadbalancer_id, lambda e: ops.update_loadbalancer(e, body.loadbalancer))
    return one(request, "loadbalancer", render.loadbalancer(lb, service.status(lb)))


@router.delete(
    "/loadbalancers/{loadbalancer_id}",
    tags=["loadbalancers"],
    status_code=204,
    response_class=Response,
    responses=WRITE,
)
async def delete_loadbalancer(
    caller: CallerDep, service: ServiceDep, loadbalancer_id: str, cascade: bool = False
) -> Response:
    await service.delete_lb(caller, loadbalancer_id, cascade)
    return Response(status_code=204)


@router.get(
    "/loadbalancers/{loadbalancer_id}/status",
    tags=["loadbalancers"],
    response_model=None,
    responses={200: {"model": s.StatusRoot}, **READ},
    summary="The status tree: load balancer, listeners, their pools, members and health monitors",
)
async def get_status_tree(caller: CallerDep, service: ServiceDep, loadbalancer_id: str) -> JSONResponse:
    lb = service.lb(caller, loadbalancer_id)
    return JSONResponse(render.status_tree(lb, service.status(lb)))


@router.get("/loadbalancers/{loadbalancer_id}/statuses", include_in_schema=False)
async def get_statuses(caller: CallerDep, service: ServiceDep, loadbalancer_id: str) -> JSONResponse:
    lb = service.lb(caller, loadbalancer_id)
    return JSONResponse(render.status_tree(lb, service.status(lb)))


@router.get(
    "/loadbalancers/{loadbalancer_id}/stats",
    tags=["loadbalancers"],
    response_model=None,
    responses={200: {"model": s.StatsRoot}, **READ},
    summary="Counters summed over the load balancer's listeners",
)
async def get_loadbalancer_stats(caller: CallerDep, service: ServiceDep, loadbalancer_id: str) -> JSONResponse:
    lb = service.lb(caller, loadbalancer_id)
    return JSONResponse(render.stats(service.status(lb), [li.id for li in lb.listeners]))
