"""The API server's operations between HTTP and the store: who may see what,
where each object lives, and writes with compare-and-swap.

Reads come from the cache. A write re-reads the load balancer's document from
the store inside update_doc's CAS loop and applies the change to that, so
concurrent writers (other requests, other API server replicas) never lose an
update; the written document then goes into the cache before the response,
so the caller reads its own write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from xdsr.api import schemas as s
from xdsr.apiserver import ops, quotas
from xdsr.apiserver.auth import Caller
from xdsr.apiserver.cache import Cache, Kind
from xdsr.apiserver.document import check_segments
from xdsr.apiserver.errors import ApiError, conflict, not_found
from xdsr.apiserver.networks import Networks
from xdsr.model import keys
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.model.quota import UNLIMITED
from xdsr.store.base import Store
from xdsr.store.docs import update_doc

T = TypeVar("T")

KIND_NAMES: dict[Kind, str] = {
    "listener": "listener",
    "pool": "pool",
    "member": "member",
    "healthmonitor": "health monitor",
}

# How long a request waits for the cache to (re)sync before answering 503.
SYNC_WAIT = 0.5


class Service:
    def __init__(self, store: Store, cache: Cache, networks: Networks | None = None) -> None:
        self.store = store
        self.cache = cache
        self.networks = networks or Networks()
        self.quotas = quotas.Quotas(store, lambda p: cache.quota(p) if p else cache.default_quota())

    def with_segments(self, body: s.LoadBalancerCreate, lb: LoadBalancer) -> LoadBalancer:
        """A new load balancer (built from body) with its segments filled in
        from the networks file where the request gave none (the VIP's from
        its subnet or network, members' from their subnets), and the
        members' checked against the VIP's."""
        if body.vip_segment is None:
            sn = self.networks.subnet(lb.vip_subnet_id, lb.vip_network_id)
            if sn is not None:
                if self.networks.outside(sn, lb.vip_address):
                    raise ApiError(
                        400, f"{lb.vip_address} is not in subnet {sn.id} ({sn.cidr})", "loadbalancer.vip_address"
                    )
                lb = lb.model_copy(update={"vip_segment": sn.segment})
        self.networks.complete(lb)
        check_segments(lb.vip_segment, ops.placed_members(body, lb))
        return lb

    async def ready(self) -> None:
        # Starting or re-listing: wait a little. Known to be down: answer now.
        if self.cache.synced:
            return
        if self.cache.down or not await self.cache.wait_synced(SYNC_WAIT):
            raise ApiError(503, "the store is unreachable (the API server's copy of it is not in sync); retry later")

    # --- reading ---

    def status(self, lb: LoadBalancer) -> LoadBalancerStatus | None:
        return self.cache.status(lb.id)

    def visible_lbs(self, caller: Caller) -> list[LoadBalancer]:
        return [lb for lb in self.cache.all_lbs() if caller.sees(lb.project_id)]

    def lb(self, caller: Caller, lb_id: str, field: str | None = None) -> LoadBalancer:
        lb = self.cache.lb(lb_id)
        if lb is None or not caller.sees(lb.project_id):
            raise not_found("load balancer", lb_id, field)
        return lb

    def owner(self, caller: Caller, kind: Kind, obj_id: str, field: str | None = None) -> LoadBalancer:
        lb = self.cache.owner(kind, obj_id)
        if lb is None or not caller.sees(lb.project_id):
            raise not_found(KIND_NAMES[kind], obj_id, field)
        return lb

    # --- writing ---

    async def edit(
        self,
        caller: Caller,
        lb_id: str,
        change: Callable[[ops.Edit], T],
        *,
        missing: tuple[str, str] | None = None,
    ) -> tuple[LoadBalancer, T]:
        """Apply change to the load balancer's current document with CAS.

        `missing` is what to call 404 if the load balancer vanished meanwhile
        (the child the request named went with it)."""
        stamp = ops.now()
        result: list[T] = []

        def apply(current: LoadBalancer | None) -> LoadBalancer:
            result.clear()
            if current is None or not caller.sees(current.project_id):
                kind, obj_id = missing or ("load balancer", lb_id)
                raise not_found(kind, obj_id)
            if current.deleting:
                raise conflict(None, f"load balancer {lb_id} is being deleted")
            edit = ops.Edit(current, stamp)
            result.append(change(edit))
            self.networks.complete(edit.doc)
            check_segments(edit.doc.vip_segment, edit.placed)
            if edit.doc == current:
                return current  # nothing to change: no new generation, no write
            return edit.finish()

        # The routes found the load balancer in the cache; its project never changes.
        known = self.cache.lb(lb_id)
        if known is None:
            kind, obj_id = missing or ("load balancer", lb_id)
            raise not_found(kind, obj_id)
        doc = await self.write(known.project_id, lb_id, apply)
        return doc, result[0]

    async def create_lb(self, caller: Caller, lb: LoadBalancer) -> LoadBalancer:
        # xdsr keys a service by (VIP, port, protocol, segment) on every LB
        # node, so a VIP belongs to one load balancer per segment. Checked on
        # the cache: two creates racing for one VIP can both pass; the
        # operator then reports the second as ERROR.
        for other in self.cache.with_vip(lb):
            if caller.sees(other.project_id):
                raise conflict(
                    "loadbalancer.vip_address", f"{lb.vip_address} is already the VIP of load balancer {other.id}"
                )
            # Another project's: the caller learns that the address is
            # taken (it must), not by whom, nor on which segment.
            raise conflict("loadbalancer.vip_address", f"{lb.vip_address} is not available: choose another VIP")

        self.networks.complete(lb)

        def apply(current: LoadBalancer | None) -> LoadBalancer:
            if current is not None:
                raise conflict(None, f"load balancer {lb.id} exists")  # a UUID collision
            return lb

        return await self.write(lb.project_id, lb.id, apply)

    async def write(
        self, project_id: str, lb_id: str, change: Callable[[LoadBalancer | None], LoadBalancer]
    ) -> LoadBalancer:
        """The one way a load balancer's document is written: change applied
        with compare-and-swap, checked against the project's quotas, the
        result in the cache before the project's next write is checked
        (quotas.py says why that keeps concurrent writes within a limit)."""
        limits = await self.quotas.write_limits(project_id)
        if all(v == UNLIMITED for v in limits.values()):
            return await self._write(lb_id, change, None)
        async with self.quotas.lock(project_id):
            return await self._write(lb_id, change, await self.quotas.write_limits(project_id))

    async def _write(
        self, lb_id: str, change: Callable[[LoadBalancer | None], LoadBalancer], limits: dict[str, int] | None
    ) -> LoadBalancer:
        # The document's bytes, made once per attempt: checked against the
        # store's limit as soon as the change is made (before the quotas, as
        # the change's own refusals), written, and told to the cache so that
        # the watch bringing them back does not parse them again.
        encoded: list[tuple[LoadBalancer, bytes]] = []

        def checked(current: LoadBalancer | None) -> LoadBalancer:
            encoded.clear()
            new = change(current)
            if new is not current:
                encoded.append((new, ops.encode(new)))
                if limits is not None:
                    others = self.cache.project_usage(new.project_id, without=lb_id)
                    quotas.check(limits, others, current, new)
            return new

        def encode(doc: LoadBalancer) -> bytes:
            data = encoded[0][1] if encoded and encoded[0][0] is doc else ops.encode(doc)
            self.cache.lbs.expect(lb_id, data, doc)
            return data

        # The cache's copy is tried first (no read; the write is still
        # conditional on its revision): a create finds the key absent, an
        # edit the document this API server wrote or watched last.
        known = self.cache.lbs.entry(lb_id) or (None, 0)
        doc, rev = await update_doc(self.store, keys.lb_key(lb_id), LoadBalancer, checked, known=known, encode=encode)
        assert doc is not None
        self.cache.lbs.apply_local(lb_id, doc, rev)
        return doc

    async def delete_lb(self, caller: Caller, lb_id: str, cascade: bool) -> None:
        lb = self.lb(caller, lb_id)
        if lb.deleting:
            return  # already requested: DELETE is idempotent
        await self.edit(caller, lb_id, lambda e: ops.delete_loadbalancer(e, cascade))

    def check_ids(self, caller: Caller, requested: list[tuple[str, str, str]]) -> None:
        """Client-chosen ids (xdsr extension): admin tokens only, each unused.

        Checked on the cache, as the VIP is: two creates racing for one id in
        different load balancers can both pass (within one document the
        write itself refuses a duplicate). Ids are UUIDs the client has
        itself (Octavia's), so the race needs a client bug."""
        if not requested:
            return
        if not caller.admin:
            raise ApiError(403, "only an admin may choose ids", requested[0][2])
        seen: set[tuple[str, str]] = set()
        for kind, obj_id, field in requested:
            if (kind, obj_id) in seen:
                raise ApiError(400, f"{obj_id} is given to two objects", field)
            seen.add((kind, obj_id))
            if kind == "loadbalancer":
                taken = self.cache.lb(obj_id) is not None
            else:
                taken = self.cache.owner(kind, obj_id) is not None  # type: ignore[arg-type]
            if taken:
                raise conflict(field, f"{KIND_NAMES.get(kind, 'load balancer')} {obj_id} exists: the id is taken")

    def project_for(self, caller: Caller, requested: str | None, field: str) -> str:
        """The project a new load balancer belongs to."""
        if requested is None or requested == caller.project_id:
            return caller.project_id
        if not caller.admin:
            raise ApiError(403, "only an admin may create objects in another project", field)
        return requested

    @staticmethod
    def child_project(lb: LoadBalancer, requested: str | None, field: str) -> str:
        """Children belong to their load balancer's project."""
        if requested is not None and requested != lb.project_id:
            raise ApiError(400, f"must be the load balancer's project {lb.project_id}", field)
        return lb.project_id
