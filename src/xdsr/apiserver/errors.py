"""Errors as Octavia reports them: `{"faultcode", "faultstring", "debuginfo"}`.

openstacksdk (and the Octavia client) show `faultstring` to the user, so every
4xx puts the offending field first: `listener.protocol: HTTP is not
supported: ...`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from xdsr.api.faults import validation_text
from xdsr.store.base import Conflict, StoreUnavailable

log = logging.getLogger("xdsr.apiserver")


class Fault(BaseModel):
    """The error body of every 4xx and 5xx."""

    faultcode: str
    faultstring: str
    debuginfo: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.field = field
        self.message = message

    @property
    def text(self) -> str:
        return str(self)


def bad_request(field: str | None, message: str) -> ApiError:
    return ApiError(400, message, field)


def not_found(kind: str, obj_id: str, field: str | None = None) -> ApiError:
    # The same answer whether the object does not exist or belongs to another
    # project: a 404 must not tell one project about another's objects.
    return ApiError(404, f"{kind} {obj_id} not found", field)


def conflict(field: str | None, message: str) -> ApiError:
    return ApiError(409, message, field)


def fault(status: int, text: str) -> JSONResponse:
    body = Fault(faultcode="Client" if status < 500 else "Server", faultstring=text)
    return JSONResponse(body.model_dump(), status_code=status)


def fault_body(status: int, text: str) -> bytes:
    """fault()'s body, for an answer given before the application runs (web.guard)."""
    return bytes(fault(status, text).body)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return fault(exc.status, exc.text)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Octavia answers 400 for invalid input, not FastAPI's 422.
        return fault(400, validation_text(list(exc.errors())))

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("store unavailable: %s", exc)
        return fault(503, f"the store is unreachable, nothing was changed by this request: {exc}")

    @app.exception_handler(Conflict)
    async def _contended(_: Request, exc: Conflict) -> JSONResponse:
        # update_doc gave up after many lost races: extreme contention on one
        # load balancer. Nothing was written; the client may retry.
        return fault(409, f"too many concurrent changes to this load balancer, nothing was changed; retry ({exc})")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            text = "not found: this API serves /, /v2 and /v2/lbaas/{loadbalancers,listeners,pools,healthmonitors}"
        return fault(exc.status_code, text)
