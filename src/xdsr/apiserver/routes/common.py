"""What every route shares: who is calling (X-Auth-Token), the service, the
error answers openapi.json documents, the list and `fields=` parameters,
and the one-object response."""

# No `from __future__ import annotations`: FastAPI must see the dependencies'
# types as objects.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from xdsr.apiserver.auth import UNAUTHENTICATED, Caller, TokenRegistry
from xdsr.apiserver.errors import ApiError, Fault
from xdsr.apiserver.listing import PAGING, TAG_FILTERS
from xdsr.apiserver.service import Service
from xdsr.model.checks import IPAddress
from xdsr.web.guard import Authenticate

# --- dependencies: create_app puts the service and the tokens on app.state ---

api_key = APIKeyHeader(name="X-Auth-Token", auto_error=False, description="A token from the tokens file")


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def authenticate(request: Request, service: ServiceDep, token: Annotated[str | None, Depends(api_key)]) -> Caller:
    # web.guard.Authenticate has checked the token before the body was read.
    caller = request.scope.get(Authenticate.SCOPE_KEY)
    if caller is None:
        registry: TokenRegistry = request.app.state.tokens
        caller = registry.authenticate(token)
    if caller is None:
        raise ApiError(401, UNAUTHENTICATED)
    await service.ready()
    return caller


CallerDep = Annotated[Caller, Depends(authenticate)]


def require_admin(caller: Caller, what: str) -> None:
    """403 unless the caller holds an admin token; `what` finishes "only an admin may ..."."""
    if not caller.admin:
        raise ApiError(403, f"only an admin may {what}")


def admin_only(what: str) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency: the authenticated caller, refused (403) unless an admin."""

    async def dependency(caller: CallerDep) -> Caller:
        require_admin(caller, what)
        return caller

    return dependency


# --- openapi.json ---

_TYPES = {str: "string", int: "integer", bool: "boolean", IPAddress: "string"}


def faults(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "Invalid request: faultstring names the field and says why",
        401: "No or unknown X-Auth-Token",
        403: "Not allowed for this token, or a quota of the project is met",
        404: "No such object (or another project's)",
        409: "Conflicts with the current state",
        413: "The request body, or the load balancer's document it would make, is too large",
        503: "The store is unreachable; nothing was changed",
    }
    return {code: {"model": Fault, "description": what[code]} for code in codes}


READ = faults(400, 401, 404, 503)
WRITE = faults(400, 401, 403, 404, 409, 413, 503)


def fields_param(out: type[BaseModel]) -> dict[str, Any]:
    return {
        "name": "fields",
        "in": "query",
        "required": False,
        "description": "Return only these attributes.",
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string", "enum": sorted(out.model_fields)}},
    }


def list_params(filters: dict[str, Any], relations: dict[str, str], out: type[BaseModel]) -> list[dict[str, Any]]:
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
        fields_param(out),
    ]
    params += [
        {"name": t, "in": "query", "required": False, "schema": {"type": "string"}, "description": "comma-separated"}
        for t in TAG_FILTERS
    ]
    assert not set(filters) & set(PAGING)
    return params


# --- responses ---


def one(request: Request, key: str, obj: dict[str, Any], status: int = 200) -> JSONResponse:
    """{key: obj}, trimmed to the attributes `fields=` asks for."""
    fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
    if fields:
        obj = {k: v for k, v in obj.items() if k in fields}
    return JSONResponse({key: obj}, status_code=status)
