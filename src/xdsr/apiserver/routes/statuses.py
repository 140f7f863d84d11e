"""xdsr: every visible load balancer's statuses at once, for clients that
follow them (Octavia's xdsr provider agent): one request instead of one per
object."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from xdsr.api import schemas as s
from xdsr.apiserver import render
from xdsr.apiserver.errors import ApiError
from xdsr.apiserver.routes.common import READ, CallerDep, ServiceDep

router = APIRouter()


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
async def sync_statuses(request: Request, caller: CallerDep, service: ServiceDep) -> JSONResponse:
    unknown = sorted(set(request.query_params) - {"loadbalancer_id"})
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; only loadbalancer_id filters", unknown[0])
    wanted = set(request.query_params.getlist("loadbalancer_id"))
    lbs = [lb for lb in service.visible_lbs(caller) if not wanted or lb.id in wanted]
    return JSONResponse(
        {"statuses": [render.sync_statuses(lb, service.status(lb)) for lb in sorted(lbs, key=lambda x: x.id)]}
    )
