"""The operator's reconcile loop.

It watches the store (load balancers, LB node registrations, groups) and
drives everything toward the intent, level-triggered: each pass looks at the
whole state, so a missed event or a restart costs nothing but a pass.

1. Membership (placement.py): every registered LB node belongs to a group
   (3 per group by default); a node that asked for a group joins it.
2. Placement (placement.py): a new load balancer goes to the group with the fewest; its
   compiled rules go under the group's prefix (keys.rules_key: with the group
   document, the paper's one resource per LBN group), each written with
   compare-and-swap, table sizes kept across member changes (compile.sized).
3. Push (nodes.py): every node of a group gets the union of the group's rules, tagged
   with the highest store revision under the group as generation. One worker
   per node, so a slow or dead node delays nobody else.
4. Status (writeback.py): from what the nodes answer, per load balancer, written back.
5. Deletion (writeback.py): a deleted load balancer leaves its group; once every node has
   applied that, its documents go.

If the operator stops, the nodes keep forwarding what they have; when it
returns it re-lists, re-pushes (idempotent on the nodes) and converges.
What every pass reads (informers, the nodes, bookkeeping) is view.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from xdsr.model.loadbalancer import LoadBalancer
from xdsr.operator import metrics
from xdsr.operator.agents import AgentClient
from xdsr.operator.nodes import NodeDriver
from xdsr.operator.placement import Placer
from xdsr.operator.view import Node, Settings
from xdsr.operator.writeback import StatusWriter
from xdsr.store.base import Conflict, Store, StoreError

__all__ = ["Node", "Operator", "Settings"]

log = logging.getLogger("xdsr.operator")


class Operator(Placer, NodeDriver, StatusWriter):
    def __init__(
        self, store: Store, token: str, settings: Settings | None = None, agents: AgentClient | None = None
    ) -> None:
        # agents: how the nodes are reached (a test may hand in its own).
        super().__init__(store, agents or AgentClient(token), settings or Settings())
        metrics.watch(self)

    async def start(self) -> None:
        for inf in self._informers():
            inf.start()
        self._tasks.append(asyncio.create_task(self._loop(), name="reconcile"))

    async def stop(self) -> None:
        tasks = self._tasks + [n.task for n in self.nodes.values() if n.task]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for inf in self._informers():
            await inf.stop()
        await self.agents.close()

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    def _lb_changed(self, name: str, _old: object, new: object) -> None:
        self._dirty_lbs.add(name)
        self._place_dirty.add(name)
        if isinstance(new, LoadBalancer) and new.deleting:
            self._deleting.add(name)
        self._kick.set()

    async def _loop(self) -> None:
        for inf in self._informers():
            while not await inf.wait_synced(60):
                log.warning("waiting for the store (%s)", inf.prefix)
        next_poll = 0.0
        placed_at = 0.0  # when a pass last placed load balancers
        while True:
            try:
                if time.monotonic() >= next_poll:
                    await self._poll_nodes()
                    next_poll = time.monotonic() + self.settings.resync
                # Load balancers that found no room are looked at by every
                # pass: they neither start nor delay a burst.
                retried = self._place_dirty & self._unplaced.keys()
                wait = placed_at + self.settings.place_interval - time.monotonic()
                if wait > 0 and len(self._place_dirty) > len(retried):
                    # A burst of creates: let more join this pass, to be
                    # compiled and written together (pushes are paced anyway).
                    await asyncio.sleep(wait)
                self._kick.clear()
                checked = self.checked
                with metrics.RECONCILE_SECONDS.time():
                    await self.reconcile()
                if self.checked - checked > len(retried):
                    placed_at = time.monotonic()
            except (StoreError, Conflict) as exc:
                metrics.RECONCILE_ERRORS.inc()
                self._all_dirty = self._place_all = True  # the pass may have consumed changes it did not finish
                log.warning("reconcile pass failed, retrying: %s", exc)
                await asyncio.sleep(self.settings.retry)
                continue
            except Exception:
                metrics.RECONCILE_ERRORS.inc()
                self._all_dirty = self._place_all = True
                log.exception("reconcile pass failed")
                await asyncio.sleep(self.settings.retry)
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a
            # cancellation that comes as the kick is set (stop() then waits
            # for this loop forever).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_poll - time.monotonic())):
                    await self._kick.wait()

    async def reconcile(self) -> None:
        self.passes += 1
        live = self._live()
        for name, rec in live.items():
            node = self.nodes.setdefault(name, Node(name))
            node.record = rec
            if node.task is None or node.task.done():
                node.task = asyncio.create_task(self._node_worker(node), name=f"push {name}")
        await self._assign_groups(live)
        await self._place()
        self._push_all()
        # The node workers send what changed before the statuses are judged:
        # a status waits for the answers of the pushes carrying its change
        # (writeback.py) and is then judged once, from them.
        await asyncio.sleep(0)
        await self._write_statuses()
        await self._finish_deletions()
