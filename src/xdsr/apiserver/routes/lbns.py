"""xdsr: the LB nodes, for the cloud's operators (admin only).

    GET /v2/lbaas/xdsr/lbns          every LB node: its group, whether it is
                                     alive, its BGP state and what it announces
    GET /v2/lbaas/xdsr/lbns/{name}   one of them

Octavia's API has no object for a load balancer's nodes: this is where a
node whose BGP session is down, that is drained or that withdrew (its XDP
program is gone) shows, next to the load balancers it leaves DEGRADED
(docs/bgp.md). A node's BGP state is the one its registration record
(keys.lbn_key) carries, which its agent rewrites when it changes; the
prefixes are those of the load balancers whose status (written by the
operator) says the node forwards them, split into those it announces and
those it withholds. The node's own word, per router, is its agent's
`GET /v1/bgp` (`xdsr agent status`).
"""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.
from ipaddress import ip_network
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from xdsr.apiserver.auth import Caller
from xdsr.apiserver.errors import not_found
from xdsr.apiserver.routes.common import ServiceDep, admin_only, faults
from xdsr.apiserver.service import Service
from xdsr.model import keys
from xdsr.model.bgp import BgpSummary, normalize_prefix, parse_summary
from xdsr.model.group import Group, LbnRecord

PATH = "/xdsr/lbns"


class LbnOut(BaseModel):
    name: str
    group: str | None = None  # the group it is in (or asks to join)
    alive: bool  # registered: its agent runs (its lease is alive)
    endpoint: str | None = None  # its agent's API
    version: str | None = None
    started_at: float | None = None  # unix time its agent started
    bgp: BgpSummary | None = None  # as it registered it; None: the node speaks no BGP (or is gone)
    announced: list[str] = []  # VIP prefixes it forwards and announces
    withheld: list[str] = []  # VIP prefixes it forwards but does not announce: the router sends it none of them


class LbnsRoot(BaseModel):
    lbns: list[LbnOut]


class LbnRoot(BaseModel):
    lbn: LbnOut


AdminDep = Annotated[Caller, Depends(admin_only("read the LB nodes"))]
router = APIRouter(tags=["xdsr"])


async def _nodes(service: Service) -> list[LbnOut]:
    items, _ = await service.store.list(keys.LBN_PREFIX)
    records = {keys.last_part(it.key): LbnRecord.model_validate_json(it.value) for it in items}
    items, _ = await service.store.list(keys.GROUP_PREFIX)
    group_of: dict[str, str] = {}
    for it in items:
        g = Group.model_validate_json(it.value)
        group_of.update(dict.fromkeys(g.lbns, g.name))

    announced: dict[str, set[str]] = {}
    withheld: dict[str, set[str]] = {}
    for lb in service.cache.all_lbs():
        st = service.status(lb)
        if st is None or lb.deleting:
            continue
        prefix = normalize_prefix(lb.vip_address)
        for node, rep in st.lbns.items():
            if rep.forwarding and rep.announcing is not None:
                (announced if rep.announcing else withheld).setdefault(node, set()).add(prefix)

    out = []
    for name in sorted(records.keys() | group_of.keys()):
        rec = records.get(name)
        out.append(
            LbnOut(
                name=name,
                group=group_of.get(name, rec.group if rec else None),
                alive=rec is not None,
                endpoint=rec.endpoint if rec else None,
                version=rec.version if rec else None,
                started_at=rec.started_at if rec else None,
                bgp=parse_summary(rec.bgp) if rec is not None and rec.bgp is not None else None,
                announced=_sorted(announced.get(name, set())) if rec else [],
                withheld=_sorted(withheld.get(name, set())) if rec else [],
            )
        )
    return out


def _sorted(prefixes: set[str]) -> list[str]:
    nets = [ip_network(p) for p in prefixes]
    return [str(n) for n in sorted(nets, key=lambda n: (n.version, n))]


@router.get(
    PATH,
    response_model=LbnsRoot,
    responses=faults(401, 403, 503),
    summary="xdsr: every LB node with its group, BGP state and the VIPs it announces (admin)",
)
async def list_lbns(caller: AdminDep, service: ServiceDep) -> LbnsRoot:
    return LbnsRoot(lbns=await _nodes(service))


@router.get(
    PATH + "/{name}",
    response_model=LbnRoot,
    responses=faults(401, 403, 404, 503),
    summary="xdsr: one LB node with its group, BGP state and the VIPs it announces (admin)",
)
async def get_lbn(caller: AdminDep, service: ServiceDep, name: str) -> LbnRoot:
    for n in await _nodes(service):
        if n.name == name:
            return LbnRoot(lbn=n)
    raise not_found("LB node", name)
