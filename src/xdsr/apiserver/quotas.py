"""Per-project quotas: what a project uses, its limits, and the check every
write makes (Octavia's quotas, plus xdsr's table slots).

Usage is counted from the documents, never kept as a counter of its own: a
load balancer's document holds all its children, so what a project uses is
the sum over its documents, and nothing can drift.

How concurrent writes stay within a limit: every write of a load balancer's
document goes through Service.write, which holds this API server's lock for
the document's project from reading the limits, through the check (made
inside the compare-and-swap loop, on the freshest document), until the
written document is in the cache (apply_local). So two writes of one
project through one API server are checked one after the other, each seeing
the other's result, and together they cannot exceed a limit. Through
several API server replicas, a replica sees another's writes once its watch
delivers them (milliseconds): creates of one project racing through
different replicas within that window can together exceed a limit by what
they ask for. `xdsr up` runs one API server.

A write reads the limits and the project's usage from the cache (cache.py
keeps both current), not from the store: a check costs no store round trip
and does not grow with the number of load balancers. A quota set through
this API server is in its cache before the PUT answers (the route waits for
it); one set through another replica counts once the watch delivers it, the
same window as above. A project without limits (every one -1) takes no
lock at all: there is nothing to check, so its writes need no order.

Only growth is refused: a project over a limit that an admin lowered can
still delete, shrink and change what it has.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable

from xdsr.apiserver.errors import ApiError
from xdsr.maglev import default_table_size
from xdsr.model import keys
from xdsr.model.loadbalancer import LoadBalancer
from xdsr.model.quota import RESOURCES, UNLIMITED, Quota
from xdsr.store.base import Store
from xdsr.store.docs import get_doc

# Octavia's names of the resources in its "Quota has been met" message.
DISPLAY = {
    "loadbalancer": "Load Balancer",
    "listener": "Listener",
    "pool": "Pool",
    "member": "Member",
    "healthmonitor": "Health Monitor",
    "l7policy": "L7 Policy",
    "l7rule": "L7 Rule",
    "table_slots": "Table Slots",
}


def table_slots(lb: LoadBalancer) -> int:
    """The Maglev slots the load balancer's services take on each LB node:
    one table per listener with a default pool, of the pool's table size or,
    if it has none, the default for its members (maglev.default_table_size;
    the operator may keep a larger size it chose before, docs/maglev.md)."""
    pools = {p.id: p for p in lb.pools}
    total = 0
    for li in lb.listeners:
        pool = pools.get(li.default_pool_id or "")
        if pool is not None:
            total += pool.table_size or default_table_size(len(pool.members))
    return total


def usage(lb: LoadBalancer) -> Counter[str]:
    return Counter(
        loadbalancer=1,
        listener=len(lb.listeners),
        pool=len(lb.pools),
        member=sum(len(p.members) for p in lb.pools),
        healthmonitor=len(lb.healthmonitors),
        table_slots=table_slots(lb),
    )


def project_usage(lbs: Iterable[LoadBalancer]) -> Counter[str]:
    total: Counter[str] = Counter()
    for lb in lbs:
        total.update(usage(lb))
    return total


class Quotas:
    def __init__(self, store: Store, cached: Callable[[str], Quota | None] | None = None) -> None:
        """cached: a project's quota ("" for the defaults) from the API
        server's copy of the store, for the check each write makes."""
        self.store = store
        self._cached = cached
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, project_id: str) -> asyncio.Lock:
        lock = self._locks.get(project_id)
        if lock is None:
            lock = self._locks[project_id] = asyncio.Lock()
        return lock

    async def defaults(self) -> Quota:
        got = await get_doc(self.store, keys.QUOTA_DEFAULTS, Quota)
        return got[0] if got else Quota()

    async def own(self, project_id: str) -> Quota | None:
        got = await get_doc(self.store, keys.quota_key(project_id), Quota)
        return got[0] if got else None

    async def limits(self, project_id: str) -> dict[str, int]:
        """The project's limits: its own where set, else the defaults."""
        own, defaults = await asyncio.gather(self.own(project_id), self.defaults())
        return (own or Quota()).over(defaults)

    async def write_limits(self, project_id: str) -> dict[str, int]:
        """The limits a write is checked against: from the cache when there
        is one (see the module's docstring), else from the store."""
        if self._cached is None:
            return await self.limits(project_id)
        return (self._cached(project_id) or Quota()).over(self._cached("") or Quota())


def check(limits: dict[str, int], others: Counter[str], current: LoadBalancer | None, new: LoadBalancer | None) -> None:
    """Refuse (403, Octavia's message) a change from current to new that
    grows a resource past its limit; `others` is what the project's other
    load balancers use."""
    before = usage(current) if current is not None else Counter()
    after = usage(new) if new is not None else Counter()
    met = []
    for name in RESOURCES:
        limit = limits.get(name, UNLIMITED)
        if limit == UNLIMITED or after[name] <= before[name]:
            continue
        if others[name] + after[name] > limit:
            met.append((name, limit))
    if met:
        names = ", ".join(DISPLAY[n] for n, _ in met)
        detail = "; ".join(f"{DISPLAY[n]} limit {lim}, in use {others[n] + before[n]}" for n, lim in met)
        raise ApiError(403, f"Quota has been met for resources: {names} ({detail})")
