"""The LB nodes: each kept at the generation its group must reach.

Every node of a group gets the union of the group's rules, tagged with the
highest store revision under the group as generation. One worker per node,
so a slow or dead node delays nobody else; a node is polled for its state
(counters, restarts, health) at every resync and when its record says a
backend it checks went up or down.
"""

from __future__ import annotations

import asyncio
import logging
import time

from xdsr.model.agent import DesiredState, RuleService
from xdsr.model.group import LbnRecord
from xdsr.operator import metrics
from xdsr.operator.agents import AgentError
from xdsr.operator.view import Node, View

log = logging.getLogger("xdsr.operator")


class NodeDriver(View):
    def _lbn_changed(self, name: str, _old: object, record: object) -> None:
        assert record is None or isinstance(record, LbnRecord)
        self._all_dirty = True  # a node came or went: its groups' statuses change
        node = self.nodes.get(name)
        if record is not None and (node is None or node.record is None or node.record.started_at != record.started_at):
            # A new or restarted node: it knows nothing until told.
            log.info("LB node %s (re)appeared at %s", name, record.endpoint)
            node = self.nodes.setdefault(name, Node(name))
            node.state = None
            node.error = None
        elif (
            record is not None
            and node is not None
            and node.record is not None
            and node.record.health_epoch != record.health_epoch
        ):
            node.poll = True  # a backend it checks went up or down
        if node is not None:
            node.record = record
            node.kick.set()
        self._kick.set()

    def _node_changed(self, node: Node) -> None:
        for g, (doc, _) in self._group_docs().items():
            if node.name in doc.lbns:
                self._dirty_groups.add(g)
        self._kick.set()

    def _push_all(self) -> None:
        live = self._live()
        placed_all = self._placed()
        for g, (doc, _) in self._group_docs().items():
            placed = placed_all.get(g, {})
            services: list[RuleService] = [
                s for p, _ in sorted(placed.values(), key=lambda x: x[1]) for s in p.services
            ]
            wanted = DesiredState(generation=self._generation(g, placed), services=services)
            for name in doc.lbns:
                node = self.nodes.get(name)
                if node is None or name not in live:
                    continue
                if node.wanted is None or node.wanted.generation != wanted.generation:
                    node.wanted = wanted
                    node.kick.set()

    async def _node_worker(self, node: Node) -> None:
        """Keep one node at the generation it should have; one push at a time."""
        while True:
            await node.kick.wait()
            node.kick.clear()
            wanted, rec = node.wanted, node.record
            if node.poll:
                node.poll = False
                await self._read_state(node)
                self._node_changed(node)
            if wanted is None or rec is None:
                continue
            if node.state is not None and node.state.generation == wanted.generation and node.error is None:
                continue
            try:
                t0 = time.perf_counter()
                node.state = await self.agents.put_state(rec.endpoint, wanted)
                node.error = node.state.error if node.state.generation < wanted.generation else None
                node.last_contact = time.monotonic()
                metrics.pushed(node.name)
                log.info(
                    "LB node %s at generation %d (%d services) in %.1f ms",
                    node.name,
                    node.state.generation,
                    len(wanted.services),
                    (time.perf_counter() - t0) * 1000,
                )
            except AgentError as exc:
                node.error = str(exc)
                metrics.push_failed(node.name)
                log.warning("push to LB node %s failed: %s", node.name, exc)
                self._node_changed(node)
                await asyncio.sleep(self.settings.retry)
                node.kick.set()
                continue
            self._node_changed(node)

    async def _poll_nodes(self) -> None:
        """Fresh state (counters, restarts) from every live node."""

        async def poll(node: Node) -> None:
            if await self._read_state(node) and node.wanted is not None:
                assert node.state is not None
                if node.state.generation != node.wanted.generation:
                    node.kick.set()

        live = self._live()
        await asyncio.gather(*(poll(n) for name, n in self.nodes.items() if name in live))
        self._all_dirty = True

    async def _read_state(self, node: Node) -> bool:
        """Ask the node what it holds now; False (and node.error) if it cannot be reached."""
        if node.record is None:
            return False
        try:
            node.state = await self.agents.get_state(node.record.endpoint)
        except AgentError as exc:
            node.error = str(exc)
            return False
        node.last_contact = time.monotonic()
        return True
