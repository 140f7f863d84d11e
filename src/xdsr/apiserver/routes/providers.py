"""The one provider (xdsr), and what L2DSR cannot serve: L7 policies."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from typing import Any

from fastapi import APIRouter, Response

from xdsr.api import l2dsr
from xdsr.apiserver.errors import ApiError
from xdsr.apiserver.routes.common import READ, CallerDep

router = APIRouter()


@router.get("/providers", tags=["providers"], responses=READ, summary="The one provider: xdsr")
async def list_providers(caller: CallerDep) -> dict[str, Any]:
    return {"providers": [{"name": "xdsr", "description": "xdsr: XDP L2 direct-server-return load balancer"}]}


@router.api_route("/l7policies{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
async def l7policies(caller: CallerDep, rest: str) -> Response:
    raise ApiError(400, l2dsr.L7, "l7policies")
