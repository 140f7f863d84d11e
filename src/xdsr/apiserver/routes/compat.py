"""What Octavia has and xdsr does not need, answered as Octavia answers an
empty deployment: flavors, availability zones, their profiles, provider
capabilities, amphorae and L7 policies list as empty (Horizon, Terraform and
the `openstack loadbalancer ... list` commands expect lists, not 404s).
A token is needed, as for every list; the profiles and amphorae are admin
only, as in Octavia. Creating any of them is refused with a 400 that says
why (L7 policies: L2DSR never sees HTTP)."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from typing import Any

from fastapi import APIRouter, Response

from xdsr.api import l2dsr
from xdsr.apiserver.errors import ApiError, not_found
from xdsr.apiserver.routes.common import READ, CallerDep, faults

router = APIRouter()

PROVIDER = "xdsr"

# path -> (list key, singular kind, admin only)
EMPTY = {
    "flavors": ("flavors", "flavor", False),
    "flavorprofiles": ("flavorprofiles", "flavor profile", True),
    "availabilityzones": ("availability_zones", "availability zone", False),
    "availabilityzoneprofiles": ("availability_zone_profiles", "availability zone profile", True),
}
ADMIN_READ = {**READ, **faults(403)}
NOTHING = "xdsr has none: one provider, no flavors or availability zones (docs/api.md)"


def _empty(path: str, key: str, kind: str, admin_only: bool) -> None:
    @router.get(
        f"/{path}", tags=["empty"], responses=ADMIN_READ if admin_only else READ, summary=f"Always empty: {NOTHING}"
    )
    async def list_(caller: CallerDep) -> dict[str, Any]:
        if admin_only and not caller.admin:
            raise ApiError(403, f"listing {kind}s is for admin tokens only", path)
        return {key: [], f"{key}_links": []}

    @router.get(f"/{path}/{{obj_id}}", tags=["empty"], responses=READ, summary=f"Always 404: {NOTHING}")
    async def get(caller: CallerDep, obj_id: str) -> dict[str, Any]:
        raise not_found(kind, obj_id)

    @router.api_route(f"/{path}{{rest:path}}", methods=["POST", "PUT", "DELETE"], include_in_schema=False)
    async def refuse(caller: CallerDep, rest: str) -> Response:
        raise ApiError(400, NOTHING, path)

    list_.__name__ = f"list_{path}"
    get.__name__ = f"get_{path}"
    refuse.__name__ = f"refuse_{path}"


for _path, (_key, _kind, _admin) in EMPTY.items():
    _empty(_path, _key, _kind, _admin)


def _provider(name: str) -> None:
    if name != PROVIDER:
        raise ApiError(400, f"provider {name!r} is not available: the one provider is {PROVIDER!r}", "provider")


@router.get("/providers/{provider}/flavor_capabilities", tags=["providers"], responses=READ)
async def flavor_capabilities(caller: CallerDep, provider: str) -> dict[str, Any]:
    """What a flavor may set on this provider: nothing."""
    _provider(provider)
    return {"flavor_capabilities": []}


@router.get("/providers/{provider}/availability_zone_capabilities", tags=["providers"], responses=READ)
async def availability_zone_capabilities(caller: CallerDep, provider: str) -> dict[str, Any]:
    """What an availability zone may set on this provider: nothing."""
    _provider(provider)
    return {"availability_zone_capabilities": []}


@router.get("/l7policies", tags=["l7policies"], responses=READ, summary="Always empty: " + l2dsr.L7)
async def list_l7policies(caller: CallerDep) -> dict[str, Any]:
    return {"l7policies": [], "l7policies_links": []}


@router.get("/l7policies/{policy_id}", tags=["l7policies"], responses=READ, summary="Always 404: " + l2dsr.L7)
async def get_l7policy(caller: CallerDep, policy_id: str) -> dict[str, Any]:
    raise not_found("l7policy", policy_id)


@router.api_route("/l7policies{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
async def l7policies(rest: str) -> Response:
    raise ApiError(400, l2dsr.L7, "l7policies")


# Mounted at /v2/octavia, as in Octavia (admin only there too).
amphorae = APIRouter()


@amphorae.get("/amphorae", tags=["empty"], responses=ADMIN_READ, summary="Always empty: xdsr runs no amphorae")
async def list_amphorae(caller: CallerDep) -> dict[str, Any]:
    if not caller.admin:
        raise ApiError(403, "listing amphorae is for admin tokens only", "amphorae")
    return {"amphorae": [], "amphorae_links": []}


@amphorae.get("/amphorae/{amphora_id}", tags=["empty"], responses=READ, summary="Always 404: xdsr runs no amphorae")
async def get_amphora(caller: CallerDep, amphora_id: str) -> dict[str, Any]:
    raise not_found("amphora", amphora_id)
