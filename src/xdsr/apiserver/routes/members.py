"""Members: /v2/lbaas/pools/{pool_id}/members, one by one or all at once (Octavia's batch update)."""

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

MEMBER_FILTERS = filters(s.MemberOut)


@router.get(
    "/pools/{pool_id}/members",
    tags=["members"],
    response_model=None,
    responses={200: {"model": s.MembersRoot}, **READ},
    openapi_extra={"parameters": list_params(MEMBER_FILTERS, {}, s.MemberOut)},
)
async def list_members(request: Request, caller: CallerDep, service: ServiceDep, pool_id: str) -> JSONResponse:
    q = ListQuery(request.query_params, MEMBER_FILTERS)
    lb = service.owner(caller, "pool", pool_id)
    pool = document.find_pool(lb, pool_id)
    assert pool is not None
    objs = [render.member(lb, service.status(lb), m) for m in pool.members]
    return JSONResponse(q.apply(objs, request.url, "members"))


@router.post(
    "/pools/{pool_id}/members",
    tags=["members"],
    status_code=201,
    response_model=None,
    responses={201: {"model": s.MemberRoot}, **WRITE},
)
async def create_member(
    request: Request, caller: CallerDep, service: ServiceDep, pool_id: str, body: s.MemberCreateRequest
) -> JSONResponse:
    lb = service.owner(caller, "pool", pool_id)
    b = body.member
    service.check_ids(caller, ops.requested_ids(b, "member", "member"))
    m = ops.build_member(b, service.child_project(lb, b.project_id, "member.project_id"), ops.now())
    lb, m = await service.edit(caller, lb.id, lambda e: ops.create_member(e, pool_id, m), missing=("pool", pool_id))
    return one(request, "member", render.member(lb, service.status(lb), m), 201)


@router.put(
    "/pools/{pool_id}/members",
    tags=["members"],
    status_code=202,
    response_class=Response,
    responses={202: {"description": "Accepted: the pool now has exactly these members"}, **WRITE},
    summary="Replace the pool's members (Octavia's batch update)",
)
async def replace_members(
    caller: CallerDep, service: ServiceDep, pool_id: str, body: s.MembersBatchRequest, additive_only: bool = False
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
    openapi_extra={"parameters": [fields_param(s.MemberOut)]},
)
async def get_member(
    request: Request, caller: CallerDep, service: ServiceDep, pool_id: str, member_id: str
) -> JSONResponse:
    lb = service.owner(caller, "pool", pool_id)
    pool = document.find_pool(lb, pool_id)
    m = document.find_member(pool, member_id) if pool else None
    if m is None:
        raise ApiError(404, f"member {member_id} not found")
    return one(request, "member", render.member(lb, service.status(lb), m))


@router.put(
    "/pools/{pool_id}/members/{member_id}",
    tags=["members"],
    response_model=None,
    responses={200: {"model": s.MemberRoot}, **WRITE},
)
async def update_member(
    request: Request, caller: CallerDep, service: ServiceDep, pool_id: str, member_id: str, body: s.MemberUpdateRequest
) -> JSONResponse:
    lb = service.owner(caller, "pool", pool_id)
    lb, m = await service.edit(
        caller,
        lb.id,
        lambda e: ops.update_member(e, pool_id, member_id, body.member),
        missing=("pool", pool_id),
    )
    return one(request, "member", render.member(lb, service.status(lb), m))


@router.delete(
    "/pools/{pool_id}/members/{member_id}",
    tags=["members"],
    status_code=204,
    response_class=Response,
    responses=WRITE,
)
async def delete_member(caller: CallerDep, service: ServiceDep, pool_id: str, member_id: str) -> Response:
    lb = service.owner(caller, "pool", pool_id)
    await service.edit(caller, lb.id, lambda e: ops.delete_member(e, pool_id, member_id), missing=("pool", pool_id))
    return Response(status_code=204)
