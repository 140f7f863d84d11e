"""A small synchronous client of the xdsr API server for the provider agent:
requests with the admin token, errors split into "unreachable, retry" and
"refused, with xdsr's reason", and a load balancer's whole tree read or
replaced in one request (xdsr's /v2/lbaas/xdsr/loadbalancers/{id}/tree)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

Obj = dict[str, Any]
LB = "/v2/lbaas/loadbalancers"


def tree_path(lb_id: str) -> str:
    return f"/v2/lbaas/xdsr/loadbalancers/{lb_id}/tree"


class XdsrUnreachable(Exception):
    """No answer, or the API server cannot reach its store (503): retry later."""


class XdsrRefused(Exception):
    """The API server refused the request; the message is its faultstring."""


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

    def tree(self, lb_id: str) -> Obj | None:
        """The load balancer with its listeners, pools, members and monitors, as the API renders them."""
        r = self.request("GET", tree_path(lb_id), ok=(200, 404))
        return r.json()["loadbalancer"] if r.status_code == 200 else None  # type: ignore[no-any-return]

    def put_tree(self, lb_id: str, body: Obj) -> None:
        """Make the load balancer exactly `body` (a fully populated create whose objects carry their ids), or
        create it: one write in xdsr, none if nothing changes."""
        self.request("PUT", tree_path(lb_id), json={"loadbalancer": body})

    def statuses(self, lb_ids: list[str] | None = None) -> dict[str, Obj]:
        """xdsr's statuses of every (or these) load balancer(s), by id (GET /v2/lbaas/xdsr/statuses)."""
        params = [("loadbalancer_id", i) for i in lb_ids or []]
        body = self.request("GET", "/v2/lbaas/xdsr/statuses", params=params).json()
        return {s["id"]: s for s in body["statuses"]}
