"""The one provider: xdsr (its capabilities: routes/compat.py)."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from typing import Any

from fastapi import APIRouter

from xdsr.apiserver.routes.common import READ, CallerDep

router = APIRouter()


@router.get("/providers", tags=["providers"], responses=READ, summary="The one provider: xdsr")
async def list_providers(caller: CallerDep) -> dict[str, Any]:
    return {"providers": [{"name": "xdsr", "description": "xdsr: XDP L2 direct-server-return load balancer"}]}
