"""A small synchronous client of the xdsr API server for the provider agent:
requests with the admin token, errors split into "unreachable, retry" and
"refused, with xdsr's reason", and the whole of one load balancer read back
as the API renders it (to compare with Octavia's view)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

Obj = dict[str, Any]
LB = "/v2/lbaas/loadbalancers"


class XdsrUnreachable(Exception):
    """No answer, or the API server cannot reach its store (503): retry later."""


class XdsrRefused(Exception):
    """The API server refused the request; the message is its faultstring."""


@dataclass
class Tree:
    """One xdsr load balancer and everything under it, as the API renders them."""

    lb: Obj
    listeners: dict[str, Obj] = field(default_factory=dict)
    pools: dict[str, Obj] = field(default_factory=dict)
    members: dict[str, tuple[str, Obj]] = field(default_factory=dict)  # id -> (pool id, member)
    healthmonitors: dict[str, Obj] = field(default_factory=dict)


def _fault(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:500]
    if isinstance(body, dict) and "faultstring" in body:
        return str(body["faultstring"])
    return r.text[:500]


class XdsrClient:
    def __init__(self, url: str, token: Callable[[], str], timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202, 204), **kw: Any
    ) -> httpx.Response:
        """The response if its status is in `ok`; XdsrUnreachable or XdsrRefused otherwise."""
        try:
            r = self.http.request(method, path, headers={"X-Auth-Token": self._token()}, **kw)
        except httpx.TransportError as exc:
            raise XdsrUnreachable(f"{self.url}: {exc.__class__.__name__}: {exc}") from None
        if r.status_code in ok:
            return r
        if r.status_code >= 500:
            raise XdsrUnreachable(f"{method} {path}: {r.status_code} {_fault(r)}")
        raise XdsrRefused(f"{_fault(r)} ({method} {path}: {r.status_code})")

    def list_all(self, path: str, key: str, params: list[tuple[str, str]] | None = None) -> list[Obj]:
        out: list[Obj] = []
        url: str | None = path
        query: list[tuple[str, str]] | None = [*(params or []), ("limit", "1000")]
        while url:
            body = self.request("GET", url, params=query).json()
            out.extend(body[key])
            nxt = [link["href"] for link in body.get(f"{key}_links", []) if link.get("rel") == "next"]
            # The next link is absolute and carries the query.
            url, query = (httpx.URL(nxt[0]).raw_path.decode(), None) if nxt else (None, None)
        return out

    def tree(self, lb_id: str) -> Tree | None:
        r = self.request("GET", f"{LB}/{lb_id}", ok=(200, 404))
        if r.status_code == 404:
            return None
        t = Tree(lb=r.json()["loadbalancer"])
        by_lb = [("loadbalancer_id", lb_id)]
        t.listeners = {li["id"]: li for li in self.list_all("/v2/lbaas/listeners", "listeners", by_lb)}
        t.pools = {p["id"]: p for p in self.list_all("/v2/lbaas/pools", "pools", by_lb)}
        for pool_id in t.pools:
            for m in self.list_all(f"/v2/lbaas/pools/{pool_id}/members", "members"):
                t.members[m["id"]] = (pool_id, m)
        if t.pools:
            hms = self.list_all("/v2/lbaas/healthmonitors", "healthmonitors", [("pool_id", p) for p in t.pools])
            t.healthmonitors = {h["id"]: h for h in hms}
        return t

    def statuses(self, lb_ids: list[str] | None = None) -> dict[str, Obj]:
        """xdsr's statuses of every (or these) load balancer(s), by id (GET /v2/lbaas/xdsr/statuses)."""
        params = [("loadbalancer_id", i) for i in lb_ids or []]
        body = self.request("GET", "/v2/lbaas/xdsr/statuses", params=params).json()
        return {s["id"]: s for s in body["statuses"]}
