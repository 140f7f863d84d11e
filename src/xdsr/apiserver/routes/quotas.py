"""Quotas, as Octavia serves them: /v2/lbaas/quotas, /quotas/defaults,
/quotas/{project_id}. A project reads its own; only an admin reads others'
and sets or resets any. xdsr also lets an admin set the defaults
(PUT /quotas/defaults), which Octavia reads from its configuration."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from xdsr.api import quotas as q
from xdsr.api.faults import validation_text
from xdsr.apiserver.errors import ApiError
from xdsr.apiserver.routes.common import CallerDep, ServiceDep, faults, require_admin
from xdsr.model import keys
from xdsr.model.quota import Quota
from xdsr.store.docs import update_doc

router = APIRouter(tags=["quotas"])

BODY = {"requestBody": {"content": {"application/json": {"schema": q.QuotaUpdateRequest.model_json_schema()}}}}


def _changed(current: Quota | None, body: q.QuotaUpdate) -> Quota:
    """current with the limits the request set (null: back to the default)."""
    values = (current or Quota()).model_dump()
    values.update({name: getattr(body, name) for name in body.model_fields_set})
    return Quota(**values)


@router.get("/quotas", response_model=None, responses=faults(401, 503), summary="Quotas set per project")
async def list_quotas(caller: CallerDep, service: ServiceDep) -> JSONResponse:
    items, _ = await service.store.list(keys.QUOTA_PREFIX)
    defaults = await service.quotas.defaults()
    out = []
    for item in items:
        project = item.key[len(keys.QUOTA_PREFIX) :]
        if caller.sees(project):
            out.append(q.render(Quota.model_validate_json(item.value).over(defaults), project))
    return JSONResponse({"quotas": out, "quotas_links": []})


@router.get("/quotas/defaults", response_model=None, responses=faults(401, 503), summary="The default quotas")
async def get_defaults(service: ServiceDep, caller: CallerDep) -> JSONResponse:
    return JSONResponse({"quota": q.render((await service.quotas.defaults()).over(Quota()))})


@router.put(
    "/quotas/defaults",
    response_model=None,
    status_code=202,
    responses=faults(400, 401, 403, 503),
    summary="xdsr: set the default quotas (admin)",
)
async def set_defaults(caller: CallerDep, service: ServiceDep, body: q.QuotaUpdateRequest) -> JSONResponse:
    require_admin(caller, "set the default quotas")
    doc, rev = await update_doc(service.store, keys.QUOTA_DEFAULTS, Quota, lambda cur: _changed(cur, body.quota))
    assert doc is not None
    await service.cache.quota_defaults.wait_for(rev)  # the next write is checked against it
    return JSONResponse({"quota": q.render(doc.over(Quota()))}, status_code=202)


@router.get("/quotas/{project_id}", response_model=None, responses=faults(401, 403, 503), summary="A project's quotas")
async def get_quota(caller: CallerDep, service: ServiceDep, project_id: str) -> JSONResponse:
    if not caller.sees(project_id):
        raise ApiError(403, "only an admin may read another project's quotas")
    return JSONResponse({"quota": q.render(await service.quotas.limits(project_id))})


@router.put(
    "/quotas/{project_id}",
    response_model=None,
    status_code=202,
    responses=faults(400, 401, 403, 503),
    summary="Set a project's quotas (admin); null sets one back to the default",
    openapi_extra=BODY,
)
async def set_quota(request: Request, caller: CallerDep, service: ServiceDep, project_id: str) -> JSONResponse:
    require_admin(caller, "set quotas")
    try:
        data = json.loads(await request.body())
    except ValueError as exc:
        raise ApiError(400, f"body: invalid JSON: {exc}") from None
    body = _update(data)
    _, rev = await update_doc(service.store, keys.quota_key(project_id), Quota, lambda cur: _changed(cur, body))
    await service.cache.quotas.wait_for(rev)  # the next write is checked against it
    return JSONResponse({"quota": q.render(await service.quotas.limits(project_id))}, status_code=202)


def _update(data: Any) -> q.QuotaUpdate:
    """{"quota": {...}} as Octavia takes it, or the limits unwrapped."""
    try:
        if isinstance(data, dict) and "quota" in data:
            return q.QuotaUpdateRequest.model_validate(data).quota
        return q.QuotaUpdate.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, validation_text(list(exc.errors()))) from None


@router.delete(
    "/quotas/{project_id}",
    status_code=204,
    response_class=Response,
    responses=faults(401, 403, 503),
    summary="Reset a project's quotas to the defaults (admin)",
)
async def reset_quota(caller: CallerDep, service: ServiceDep, project_id: str) -> Response:
    require_admin(caller, "reset quotas")
    rev = await service.store.delete(keys.quota_key(project_id))
    if rev:
        await service.cache.quotas.wait_for(rev)  # the next write is checked against it
    return Response(status_code=204)
