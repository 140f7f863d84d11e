"""Every load balancer and status document, in memory, with an index from
each child object (listener, pool, member, health monitor) to the load
balancer whose document holds it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from xdsr.model import keys
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.store.base import Store
from xdsr.store.informer import Informer

Kind = Literal["listener", "pool", "member", "healthmonitor"]


def children(lb: LoadBalancer) -> list[tuple[Kind, str]]:
    out: list[tuple[Kind, str]] = [("listener", li.id) for li in lb.listeners]
    for pool in lb.pools:
        out.append(("pool", pool.id))
        out.extend(("member", m.id) for m in pool.members)
    out.extend(("healthmonitor", hm.id) for hm in lb.healthmonitors)
    return out


class Cache:
    def __init__(self, store: Store) -> None:
        self.lbs: Informer[LoadBalancer] = Informer(store, keys.LB_PREFIX, LoadBalancer, self._lb_changed)
        self.statuses: Informer[LoadBalancerStatus] = Informer(store, keys.STATUS_PREFIX, LoadBalancerStatus)
        self._owner: dict[tuple[Kind, str], str] = {}

    def _lb_changed(self, lb_id: str, old: BaseModel | None, new: BaseModel | None) -> None:
        if isinstance(old, LoadBalancer):
            for child in children(old):
                if self._owner.get(child) == lb_id:
                    del self._owner[child]
        if isinstance(new, LoadBalancer):
            for child in children(new):
                self._owner[child] = lb_id

    def start(self) -> None:
        self.lbs.start()
        self.statuses.start()

    async def stop(self) -> None:
        await self.lbs.stop()
        await self.statuses.stop()

    @property
    def synced(self) -> bool:
        return self.lbs.synced and self.statuses.synced

    @property
    def down(self) -> bool:
        """The last attempt to reach the store failed (no point waiting for a sync)."""
        return self.lbs.down or self.statuses.down

    async def wait_synced(self, timeout: float) -> bool:
        return await self.lbs.wait_synced(timeout) and await self.statuses.wait_synced(timeout)

    def lb(self, lb_id: str) -> LoadBalancer | None:
        return self.lbs.get(lb_id)

    def status(self, lb_id: str) -> LoadBalancerStatus | None:
        return self.statuses.get(lb_id)

    def owner(self, kind: Kind, obj_id: str) -> LoadBalancer | None:
        lb_id = self._owner.get((kind, obj_id))
        return self.lbs.get(lb_id) if lb_id else None

    def all_lbs(self) -> list[LoadBalancer]:
        return self.lbs.values()
