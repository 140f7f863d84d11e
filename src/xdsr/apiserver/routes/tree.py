"""xdsr: a load balancer's whole tree in one request, for a client that holds
the tree itself (Octavia's xdsr provider agent) and would otherwise read it
in 4 + N requests and replay its changes one object at a time.

    GET /v2/lbaas/xdsr/loadbalancers/{id}/tree   the tree, in one read
    PUT /v2/lbaas/xdsr/loadbalancers/{id}/tree   replace (or create) it

The body of the PUT is a fully populated create (schemas.LoadBalancerCreate)
in which every object carries the id the client chose for it: objects are
matched by id. It is validated and built exactly as a create is
(ops.build_loadbalancer), then written in one compare-and-swap of the
document. An object whose attributes are unchanged keeps its generation, so
it stays ACTIVE while its LB nodes take the change; the changed and new ones
are stamped with the new generation and show PENDING_* until the operator
has observed it (status.py). Nothing changed: nothing is written.

Admin tokens only: the client chooses ids, and it replaces what others may
have created one object at a time.
"""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from xdsr.api import schemas as s
from xdsr.apiserver import ops, render
from xdsr.apiserver.auth import Caller
from xdsr.apiserver.document import check_segments
from xdsr.apiserver.errors import ApiError, conflict, not_found
from xdsr.apiserver.routes.common import ServiceDep, admin_only, faults
from xdsr.apiserver.service import Service
from xdsr.model.loadbalancer import LoadBalancer

PATH = "/xdsr/loadbalancers/{loadbalancer_id}/tree"

# A load balancer's attributes that no update may change (LoadBalancerUpdate
# has none of them): a replace keeps the stored ones.
KEPT = (
    "project_id",
    "vip_address",
    "vip_segment",
    "vip_network_id",
    "vip_subnet_id",
    "vip_port_id",
    "lbn_group",
    "availability_zone",
    "provider",
    "flavor_id",
    "created_at",
    "updated_at",
    "generation",
    "pending",
    "deleting",
)
# What is not an object's own attribute: bookkeeping, and its children (compared on their own).
NOT_ATTRIBUTES = {
    "generation",
    "created_at",
    "updated_at",
    "pending",
    "deleting",
    "listeners",
    "pools",
    "healthmonitors",
    "members",
    "healthmonitor_id",
}


class TreeRoot(BaseModel):
    loadbalancer: s.LoadBalancerFullOut


def _attributes(obj: BaseModel) -> dict[str, Any]:
    return obj.model_dump(exclude=NOT_ATTRIBUTES)


def _objects(doc: LoadBalancer) -> dict[tuple[str, ...], Any]:
    """Every child by kind and id (a member by its pool too: moving it is replacing it)."""
    out: dict[tuple[str, ...], Any] = {("listener", li.id): li for li in doc.listeners}
    for p in doc.pools:
        out[("pool", p.id)] = p
        out.update({("member", p.id, m.id): m for m in p.members})
    out.update({("healthmonitor", h.id): h for h in doc.healthmonitors})
    return out


def replace(current: LoadBalancer, wanted: LoadBalancer, stamp: str) -> LoadBalancer:
    """current with wanted's tree: unchanged objects keep their generation and
    times, changed and new ones get the next generation. current itself if
    nothing changed."""
    edit = ops.Edit(current, stamp)
    doc = wanted.model_copy(update={k: getattr(current, k) for k in KEPT})
    edit.doc = doc
    if _attributes(doc) != _attributes(current):
        edit.updated.append(doc)
    before = _objects(current)
    after = _objects(doc)
    for key, obj in after.items():
        old = before.get(key)
        if old is None:
            edit.created.append(obj)
            continue
        obj.created_at, obj.updated_at, obj.generation = old.created_at, old.updated_at, old.generation
        if _attributes(obj) != _attributes(old):
            edit.updated.append(obj)
    if not (edit.created or edit.updated or before.keys() - after.keys()):
        return current  # at most an order changed: nothing to write, no new generation
    return edit.finish()


def _missing_id(body: BaseModel, where: str) -> str | None:
    """Where an object of the request has no id (the tree is matched by id)."""
    fields = type(body).model_fields
    if "id" in fields and body.id is None:  # type: ignore[attr-defined]
        return f"{where}.id"
    for attr in ("listeners", "pools", "members"):
        if attr in fields:
            for i, child in enumerate(getattr(body, attr) or []):
                found = _missing_id(child, f"{where}.{attr}[{i}]")
                if found:
                    return found
    for attr in ("default_pool", "healthmonitor"):
        child = getattr(body, attr, None) if attr in fields else None
        if isinstance(child, BaseModel):
            found = _missing_id(child, f"{where}.{attr}")
            if found:
                return found
    return None


AdminDep = Annotated[Caller, Depends(admin_only("read or replace a whole tree"))]
router = APIRouter(tags=["xdsr"])


def full(service: Service, lb: LoadBalancer, status: int = 200) -> JSONResponse:
    body = {"loadbalancer": render.loadbalancer(lb, service.status(lb), full=True)}
    return JSONResponse(body, status_code=status)


@router.get(
    PATH,
    response_model=None,
    responses={200: {"model": TreeRoot}, **faults(401, 403, 404, 503)},
    summary="xdsr: a load balancer with all its listeners, pools, members and health monitors (admin)",
)
async def get_tree(caller: AdminDep, service: ServiceDep, loadbalancer_id: str) -> JSONResponse:
    return full(service, service.lb(caller, loadbalancer_id))


@router.put(
    PATH,
    response_model=None,
    responses={
        200: {"model": TreeRoot, "description": "Replaced"},
        201: {"model": TreeRoot, "description": "Created"},
        **faults(400, 401, 403, 404, 409, 413, 503),
    },
    summary="xdsr: replace (or create) a load balancer's whole tree in one write; objects matched by id (admin)",
)
async def put_tree(
    caller: AdminDep, service: ServiceDep, loadbalancer_id: str, body: s.LoadBalancerCreateRequest
) -> JSONResponse:
    b = body.loadbalancer
    try:
        lb_id = str(uuid.UUID(loadbalancer_id))
    except ValueError:
        raise ApiError(400, f"{loadbalancer_id!r} is not a UUID", "loadbalancer_id") from None
    if b.id is not None and str(b.id) != lb_id:
        raise ApiError(400, f"must be the id in the path, {lb_id}", "loadbalancer.id")
    b = b.model_copy(update={"id": uuid.UUID(lb_id)})
    missing = _missing_id(b, "loadbalancer")
    if missing:
        raise ApiError(400, "every object of a tree needs its id: objects are matched by id", missing)
    # Ids of other load balancers' objects are taken; this one's are its own.
    for kind, obj_id, field in ops.requested_ids(b, "loadbalancer", "loadbalancer")[1:]:
        owner = service.cache.owner(kind, obj_id)  # type: ignore[arg-type]
        if owner is not None and owner.id != lb_id:
            raise conflict(field, f"{kind} {obj_id} belongs to load balancer {owner.id}: the id is taken")

    current = service.cache.lb(lb_id)
    if current is None:
        project = service.project_for(caller, b.project_id, "loadbalancer.project_id")
        lb = service.with_segments(b, ops.build_loadbalancer(b, project, ops.now()))
        return full(service, await service.create_lb(caller, lb), 201)

    if b.project_id is not None and b.project_id != current.project_id:
        raise conflict("loadbalancer.project_id", f"the load balancer belongs to project {current.project_id}")
    stamp = ops.now()
    wanted = ops.build_loadbalancer(b, current.project_id, stamp)
    service.networks.complete(wanted)
    placed = ops.placed_members(b, wanted)

    def apply(now: LoadBalancer | None) -> LoadBalancer:
        if now is None:
            raise not_found("load balancer", lb_id)  # deleted meanwhile
        if now.deleting:
            raise conflict(None, f"load balancer {lb_id} is being deleted")
        if now.vip_address != wanted.vip_address:
            vip_now = now.vip_address
            raise conflict("loadbalancer.vip_address", f"the VIP of {lb_id} is {vip_now}: it cannot change")
        check_segments(now.vip_segment, placed)
        return replace(now, wanted.model_copy(deep=True), stamp)

    return full(service, await service.write(current.project_id, lb_id, apply))
