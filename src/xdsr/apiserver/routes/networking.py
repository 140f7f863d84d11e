"""A minimal, read-only lookup of the networks file in the Networking API's
shape (`/v2.0/subnets`, `/v2.0/networks`): not a Neutron.

The OpenStack client resolves `--vip-subnet-id X` and a member's
`--subnet-id X` through the Networking API before it calls the
load-balancer API (GET /v2.0/subnets/X, then ?id=X or ?name=X). xdsr
answers those lookups from the subnets the operator listed in the networks
file (networks.py), the same data that gives a subnet its VLAN; it creates,
changes and deletes nothing. Every token sees every subnet (they are the
operator's, shared by all projects).
"""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from typing import Any

from fastapi import APIRouter, Request

from xdsr.apiserver.errors import ApiError, not_found
from xdsr.apiserver.networks import Networks, Subnet
from xdsr.apiserver.routes.common import READ, CallerDep, ServiceDep

router = APIRouter(tags=["networking (lookup only)"])

READ_ONLY = "xdsr answers subnet and network lookups from its networks file; it manages no networks"


def subnet_view(sn: Subnet) -> dict[str, Any]:
    return {
        "id": sn.id,
        "name": sn.name or "",
        "network_id": sn.network_id,
        "cidr": str(sn.cidr) if sn.cidr else None,
        "ip_version": sn.cidr.version if sn.cidr else None,
        "project_id": "",
        "tenant_id": "",
        "enable_dhcp": False,
        "gateway_ip": None,
        "segment_id": None,
        "description": f"{sn.segment.type} {sn.segment.id}",
        "tags": [],
    }


def network_views(networks: Networks) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sn in networks.by_subnet.values():
        if sn.network_id is None:
            continue
        net = out.setdefault(
            sn.network_id,
            {
                "id": sn.network_id,
                "name": "",
                "status": "ACTIVE",
                "admin_state_up": True,
                "shared": True,
                "project_id": "",
                "tenant_id": "",
                "subnets": [],
                "provider:network_type": sn.segment.type,
                "provider:segmentation_id": sn.segment.id,
                "tags": [],
            },
        )
        net["subnets"].append(sn.id)
    return list(out.values())


def _filter(objs: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
    q = request.query_params
    fields = [f for v in q.getlist("fields") for f in v.split(",") if f]
    for key in {k for k in q if k != "fields"}:
        wanted = set(q.getlist(key))
        objs = [o for o in objs if str(o.get(key)) in wanted]
    if fields:
        objs = [{k: v for k, v in o.items() if k in fields} for o in objs]
    return objs


@router.get("/subnets", responses=READ, summary="The networks file's subnets (filters: any attribute; fields=)")
async def list_subnets(request: Request, caller: CallerDep, service: ServiceDep) -> dict[str, Any]:
    return {"subnets": _filter([subnet_view(s) for s in service.networks.by_subnet.values()], request)}


@router.get("/subnets/{subnet_id}", responses=READ, summary="One subnet of the networks file")
async def get_subnet(caller: CallerDep, service: ServiceDep, subnet_id: str) -> dict[str, Any]:
    sn = service.networks.by_subnet.get(subnet_id)
    if sn is None:
        raise not_found("subnet", subnet_id)
    return {"subnet": subnet_view(sn)}


@router.get("/networks", responses=READ, summary="The networks the networks file's subnets name")
async def list_networks(request: Request, caller: CallerDep, service: ServiceDep) -> dict[str, Any]:
    return {"networks": _filter(network_views(service.networks), request)}


@router.get("/networks/{network_id}", responses=READ, summary="One network the networks file names")
async def get_network(caller: CallerDep, service: ServiceDep, network_id: str) -> dict[str, Any]:
    for net in network_views(service.networks):
        if net["id"] == network_id:
            return {"network": net}
    raise not_found("network", network_id)


@router.api_route("/subnets{rest:path}", methods=["POST", "PUT", "DELETE"], include_in_schema=False)
async def refuse_subnets(rest: str) -> None:
    raise ApiError(400, READ_ONLY, "subnets")


@router.api_route("/networks{rest:path}", methods=["POST", "PUT", "DELETE"], include_in_schema=False)
async def refuse_networks(rest: str) -> None:
    raise ApiError(400, READ_ONLY, "networks")
