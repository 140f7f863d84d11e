"""`xdsr status`: the groups, their LB nodes and which load balancers are
where, read from the store (and, given the agents' token, from each node).

A node is *alive* while its registration (under a lease) is in the store.
Its applied generation is what the operator last wrote back for it; with
`--token-file` (and the agents' TLS options) each node is also asked
directly (GET /v1/state, /v1/bgp): the generation it holds now, its error,
and its BGP state and sessions when it has any.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from xdsr.model import keys
from xdsr.model.group import Group, LbnRecord, PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.store.base import Store, StoreError
from xdsr.web.tls import ClientTls


async def gather(store: Store, agent_token: str | None = None, tls: ClientTls | None = None) -> dict[str, Any]:
    """Everything `xdsr status` shows, as one JSON-able dict."""

    async def docs(prefix: str, model: type[Any]) -> dict[str, Any]:
        items, _ = await store.list(prefix)
        return {it.key[len(prefix) :]: model.model_validate_json(it.value) for it in items}

    groups: dict[str, Group] = await docs(keys.GROUP_PREFIX, Group)
    records: dict[str, LbnRecord] = await docs(keys.LBN_PREFIX, LbnRecord)
    lbs: dict[str, LoadBalancer] = await docs(keys.LB_PREFIX, LoadBalancer)
    statuses: dict[str, LoadBalancerStatus] = await docs(keys.STATUS_PREFIX, LoadBalancerStatus)
    placed: dict[str, PlacedLoadBalancer] = await docs(keys.RULES_PREFIX, PlacedLoadBalancer)

    where: dict[str, list[str]] = {}
    for key in placed:
        group, lb_id = key.split("/", 1)
        where.setdefault(group, []).append(lb_id)

    applied: dict[str, int] = {}
    for st in statuses.values():
        for node, rep in st.lbns.items():
            applied[node] = max(applied.get(node, 0), rep.applied_generation)

    live: dict[str, dict[str, Any]] = {}
    if agent_token:
        live = await _ask_nodes(records, agent_token, tls)

    def node_view(name: str) -> dict[str, Any]:
        rec = records.get(name)
        out: dict[str, Any] = {
            "name": name,
            "alive": rec is not None,
            "endpoint": rec.endpoint if rec else None,
            "version": rec.version if rec else None,
            "generation_applied": applied.get(name),
        }
        if rec is not None and rec.bgp is not None:
            out["bgp"] = rec.bgp  # as the node registered it; --token-file asks the node itself
        out.update(live.get(name, {}))
        return out

    def lb_view(lb_id: str) -> dict[str, Any]:
        lb, st = lbs.get(lb_id), statuses.get(lb_id)
        return {
            "id": lb_id,
            "name": lb.name if lb else None,
            "vip_address": str(lb.vip_address) if lb else None,
            "provisioning_status": st.provisioning_status if st else "PENDING_CREATE",
            "operating_status": st.operating_status if st else "OFFLINE",
            "error": st.error if st else None,
        }

    grouped = {n for g in groups.values() for n in g.lbns}
    placed_ids = {i for ids in where.values() for i in ids}
    return {
        "groups": [
            {
                "name": name,
                "nodes": [node_view(n) for n in g.lbns],
                "loadbalancers": [lb_view(i) for i in sorted(where.get(name, []))],
            }
            for name, g in sorted(groups.items())
        ],
        "ungrouped_nodes": [node_view(n) for n in sorted(set(records) - grouped)],
        "unplaced_loadbalancers": [lb_view(i) for i in sorted(set(lbs) - placed_ids)],
    }


async def _ask_nodes(records: dict[str, LbnRecord], token: str, tls: ClientTls | None) -> dict[str, dict[str, Any]]:
    import httpx

    verify: Any = tls.context() if tls is not None else True
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=3.0, headers=headers, verify=verify) as http:

        async def ask(rec: LbnRecord) -> tuple[str, dict[str, Any]]:
            try:
                r = await http.get(f"{rec.endpoint}/v1/state")
                r.raise_for_status()
                state = r.json()
                r = await http.get(f"{rec.endpoint}/v1/bgp")
                r.raise_for_status()
                bgp = r.json()
            except (httpx.HTTPError, ValueError) as exc:
                return rec.name, {"reachable": False, "node_error": f"{exc.__class__.__name__}: {exc}"}
            out = {"reachable": True, "generation": state.get("generation"), "node_error": state.get("error")}
            if bgp.get("enabled"):
                out["bgp"] = {k: bgp.get(k) for k in ("state", "reason", "drained", "announced")}
                out["bgp"]["sessions"] = {p["name"]: p["state"] for p in bgp.get("peers") or []}
            return rec.name, out

        return dict(await asyncio.gather(*(ask(r) for r in records.values())))


def render(view: dict[str, Any]) -> str:
    lines: list[str] = []

    def node_line(n: dict[str, Any]) -> str:
        state = "alive" if n["alive"] else "GONE"
        if n.get("reachable") is False:
            state = "UNREACHABLE"
        gen = n.get("generation", n["generation_applied"])
        parts = [f"    node {n['name']:<16} {state:<11} generation {gen if gen is not None else '-'}"]
        if n.get("endpoint"):
            parts.append(n["endpoint"])
        if n.get("bgp") is not None:
            parts.append(f"bgp {json.dumps(n['bgp'], separators=(',', ':'))}")
        if n.get("node_error"):
            parts.append(f"error: {n['node_error']}")
        return "  ".join(parts)

    def lb_line(lb: dict[str, Any]) -> str:
        text = (
            f"    lb   {lb['id']}  {lb['vip_address'] or '-':<15} {lb['provisioning_status']}/{lb['operating_status']}"
        )
        if lb["name"]:
            text += f"  {lb['name']}"
        if lb["error"]:
            text += f"  error: {lb['error']}"
        return text

    for g in view["groups"]:
        lines.append(f"group {g['name']}: {len(g['nodes'])} nodes, {len(g['loadbalancers'])} load balancers")
        lines += [node_line(n) for n in g["nodes"]]
        lines += [lb_line(lb) for lb in g["loadbalancers"]]
    if view["ungrouped_nodes"]:
        lines.append("not in a group yet:")
        lines += [node_line(n) for n in view["ungrouped_nodes"]]
    if view["unplaced_loadbalancers"]:
        lines.append("not placed yet:")
        lines += [lb_line(lb) for lb in view["unplaced_loadbalancers"]]
    if not lines:
        lines.append("no groups, LB nodes or load balancers yet")
    return "\n".join(lines)


def status(
    store: Annotated[str, typer.Option(help="etcd endpoint, e.g. http://127.0.0.1:2379")] = "http://127.0.0.1:2379",
    token_file: Annotated[
        Path | None, typer.Option(help="the agents' token: also ask each LB node (generation now, BGP)")
    ] = None,
    agent_ca: Annotated[Path | None, typer.Option(help="the CA the agents' TLS certificates chain to")] = None,
    agent_cert: Annotated[Path | None, typer.Option(help="a client certificate the agents accept (clientAuth)")] = None,
    agent_key: Annotated[Path | None, typer.Option(help="its private key")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Show the groups, their LB nodes and which load balancers are where."""
    from xdsr.store.etcd import EtcdStore

    token = token_file.read_text().strip() if token_file else None
    given = [f for f in (agent_ca, agent_cert, agent_key) if f is not None]
    if given and len(given) != 3:
        raise typer.BadParameter("give all of --agent-ca, --agent-cert and --agent-key, or none (plain HTTP)")
    tls = ClientTls(agent_ca, agent_cert, agent_key) if agent_ca and agent_cert and agent_key else None

    async def run() -> dict[str, Any]:
        etcd = EtcdStore(store)
        try:
            return await gather(etcd, token, tls)
        finally:
            await etcd.close()

    try:
        view = asyncio.run(run())
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(view, indent=2) if as_json else render(view))
