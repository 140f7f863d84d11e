"""Every load balancer, status and quota document, in memory, with the
indexes a write asks of them: each child object (listener, pool, member,
health monitor) to the load balancer whose document holds it, each VIP to
the load balancers that have it, and what each project uses (quotas.usage,
summed over its documents). The indexes follow every change of the copy
(the watch's, a relist's, this process's own writes), so a create checks
uniqueness and quotas in constant time however many load balancers exist."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel

from xdsr.apiserver.quotas import usage
from xdsr.model import keys
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.model.quota import Quota
from xdsr.store.base import Store
from xdsr.store.informer import Informer

Kind = Literal["listener", "pool", "member", "healthmonitor"]
VipKey = tuple[str, str, int]  # VIP, its segment's type and id


def vip_key(lb: LoadBalancer) -> VipKey:
    return (str(lb.vip_address), lb.vip_segment.type, lb.vip_segment.id)


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
        self.quotas: Informer[Quota] = Informer(store, keys.QUOTA_PREFIX, Quota)
        # One key: its name in this copy is "".
        self.quota_defaults: Informer[Quota] = Informer(store, keys.QUOTA_DEFAULTS, Quota)
        self._owner: dict[tuple[Kind, str], str] = {}
        self._vips: dict[VipKey, set[str]] = {}
        self._usage: dict[str, Counter[str]] = {}

    def _lb_changed(self, lb_id: str, old: BaseModel | None, new: BaseModel | None) -> None:
        if isinstance(old, LoadBalancer):
            for child in children(old):
                if self._owner.get(child) == lb_id:
                    del self._owner[child]
            have = self._vips.get(vip_key(old))
            if have is not None:
                have.discard(lb_id)
                if not have:
                    del self._vips[vip_key(old)]
            self._usage[old.project_id].subtract(usage(old))
        if isinstance(new, LoadBalancer):
            for child in children(new):
                self._owner[child] = lb_id
            self._vips.setdefault(vip_key(new), set()).add(lb_id)
            self._usage.setdefault(new.project_id, Counter()).update(usage(new))

    def _informers(self) -> tuple[Informer, ...]:  # type: ignore[type-arg]
        return (self.lbs, self.statuses, self.quotas, self.quota_defaults)

    def start(self) -> None:
        for inf in self._informers():
            inf.start()

    async def stop(self) -> None:
        for inf in self._informers():
            await inf.stop()

    @property
    def synced(self) -> bool:
        return all(inf.synced for inf in self._informers())

    @property
    def down(self) -> bool:
        """The last attempt to reach the store failed (no point waiting for a sync)."""
        return any(inf.down for inf in self._informers())

    async def wait_synced(self, timeout: float) -> bool:
        for inf in self._informers():
            if not await inf.wait_synced(timeout):
                return False
        return True

    def lb(self, lb_id: str) -> LoadBalancer | None:
        return self.lbs.get(lb_id)

    def status(self, lb_id: str) -> LoadBalancerStatus | None:
        return self.statuses.get(lb_id)

    def owner(self, kind: Kind, obj_id: str) -> LoadBalancer | None:
        lb_id = self._owner.get((kind, obj_id))
        return self.lbs.get(lb_id) if lb_id else None

    def all_lbs(self) -> list[LoadBalancer]:
        return self.lbs.values()

    def with_vip(self, lb: LoadBalancer) -> list[LoadBalancer]:
        """The load balancers that have lb's VIP on its segment."""
        found = (self.lbs.get(i) for i in sorted(self._vips.get(vip_key(lb), ())))
        return [other for other in found if other is not None]

    def project_usage(self, project_id: str, without: str | None = None) -> Counter[str]:
        """What the project's load balancers use, but for the one named `without`."""
        total = Counter(self._usage.get(project_id, {}))
        skip = self.lbs.get(without) if without is not None else None
        if skip is not None and skip.project_id == project_id:
            total.subtract(usage(skip))
        return total

    def quota(self, project_id: str) -> Quota | None:
        return self.quotas.get(project_id)

    def default_quota(self) -> Quota | None:
        return self.quota_defaults.get("")
