"""Micro-benchmark of the operator's CPU for one member add at scale (issue
10), in process: the memory store, the operator, and three in-process LB
nodes (tests/operator/test_passes.Nodes, which run the agent's checks).

    PYTHONPATH=. .venv/bin/python scripts/bench_member_add.py [N_LBS] [MEMBERS] [RUNS] [--profile]
    # the same on another tree (main), for a before/after in one period:
    PYTHONPATH=/work/main/src:/work/main .venv/bin/python scripts/bench_member_add.py 300 255

One member add = the document written to the store (its bytes made before
the clock starts: that is the API server's work), then reconcile passes
until the load balancer's status says every node has the new generation.
Counted is the process CPU of all that minus the time inside the nodes'
push handler (the agents' work); what is left is the operator (parsing the
document, placing, compiling, checking, encoding the pushes, judging and
writing the status) and the in-memory store. Min/median/max in ms.
--profile prints a cProfile of the operator's part instead.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import statistics
import sys
import time

from tests.operator.test_passes import NOW, Nodes, endpoint

from xdsr.model import keys
from xdsr.model.group import LbnRecord
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.operator.operator import Operator, Settings
from xdsr.store.docs import dump, get_doc
from xdsr.store.memory import MemoryStore


def member(lb: int, j: int) -> dict[str, object]:
    return {
        "id": f"lb{lb}-m{j}",
        "project_id": "p",
        "created_at": NOW,
        "address": f"10.{lb >> 8 & 255}.{lb & 255}.{j % 250 + 1}" if j < 250 else f"10.200.{lb & 255}.{j}",
        "mac_address": f"02:00:{lb >> 8 & 255:02x}:{lb & 255:02x}:{j >> 8 & 255:02x}:{j & 255:02x}",
        "protocol_port": 80,
    }


def lb_doc(i: int, members: int, generation: int = 1) -> dict[str, object]:
    return {
        "id": f"lb{i}",
        "project_id": "p",
        "created_at": NOW,
        "vip_address": f"203.{i >> 8 & 255}.{i & 255}.10",
        "vip_segment": {"type": "vlan", "id": 10},
        "generation": generation,
        "listeners": [
            {
                "id": "l1",
                "project_id": "p",
                "created_at": NOW,
                "protocol": "TCP",
                "protocol_port": 80,
                "default_pool_id": "p1",
            }
        ],
        "pools": [
            {
                "id": "p1",
                "project_id": "p",
                "created_at": NOW,
                "protocol": "TCP",
                "lb_algorithm": "ROUND_ROBIN",
                "members": [member(i, j) for j in range(members)],
            }
        ],
    }


class TimedNodes(Nodes):
    """The in-process nodes, counting the CPU spent in them (the agents' part)."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu = 0.0
        self.prof: cProfile.Profile | None = None  # paused while the nodes work

    async def push(self, endpoint: str, state):  # type: ignore[no-untyped-def]
        return await self._timed(super().push(endpoint, state))

    async def get_state(self, endpoint: str, since=None):  # type: ignore[no-untyped-def]
        return await self._timed(super().get_state(endpoint, since))

    async def _timed(self, work):  # type: ignore[no-untyped-def]
        # Both handlers run to the end without awaiting anything else.
        if self.prof:
            self.prof.disable()
        t0 = time.process_time()
        try:
            return await work
        finally:
            self.cpu += time.process_time() - t0
            if self.prof:
                self.prof.enable()


async def settle(op: Operator, store: MemoryStore, nodes: TimedNodes, lb_id: str, generation: int) -> None:
    for _ in range(200):
        await op.reconcile()
        for _ in range(100):
            if all(
                n.wanted is None or (n.state and n.state.generation == n.wanted.generation) for n in op.nodes.values()
            ):
                break
            await asyncio.sleep(0)
        got = op.statuses.get(lb_id)
        if isinstance(got, LoadBalancerStatus) and got.observed_generation >= generation:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{lb_id} never reached generation {generation}")


async def main(n_lbs: int, members: int, runs: int, profile: bool) -> None:
    store = MemoryStore()
    nodes = TimedNodes()
    op = Operator(store, "token", Settings(group_size=3, retry=0.01), agents=nodes)  # type: ignore[arg-type]
    for inf in op._informers():
        inf.start()
    for inf in op._informers():
        assert await inf.wait_synced(5)
    try:
        for name in ("n1", "n2", "n3"):
            lease = await store.grant_lease(600)
            rec = LbnRecord(name=name, endpoint=endpoint(name), started_at=1.0, max_services=8192)
            rev = await store.put(keys.lbn_key(name), dump(rec), lease=lease)
            await op.lbns.wait_for(rev)
        t0 = time.monotonic()
        rev = 0
        for i in range(n_lbs):
            rev = await store.put(keys.lb_key(f"lb{i}"), dump(LoadBalancer.model_validate(lb_doc(i, members))))
        await op.lbs.wait_for(rev, timeout=600)
        await settle(op, store, nodes, f"lb{n_lbs - 1}", 1)
        for i in range(n_lbs):
            await settle(op, store, nodes, f"lb{i}", 1)
        print(f"{n_lbs} x {members} settled in {time.monotonic() - t0:.1f} s", file=sys.stderr)

        got: list[float] = []
        prof = nodes.prof = cProfile.Profile() if profile else None
        for k in range(runs):
            i = (k * 37) % n_lbs
            lb_id = f"lb{i}"
            cur = await get_doc(store, keys.lb_key(lb_id), LoadBalancer)
            assert cur is not None
            doc = cur[0].model_dump(mode="json")
            pool = doc["pools"][0]
            new = {**member(i, 0), "id": f"{lb_id}-new{k}", "address": f"10.250.{k >> 8 & 255}.{k & 255 or 1}"}
            pool["members"].append(new)
            doc["generation"] = cur[0].generation + 1
            value = dump(LoadBalancer.model_validate(doc))
            await asyncio.sleep(0.01)  # let the previous change's leftovers run out of the clock
            nodes.cpu = 0.0
            if prof:
                prof.enable()
            t0 = time.process_time()
            rev = await store.put(keys.lb_key(lb_id), value, expect=cur[1])
            await op.lbs.wait_for(rev)
            await settle(op, store, nodes, lb_id, doc["generation"])  # type: ignore[arg-type]
            spent = time.process_time() - t0 - nodes.cpu
            if prof:
                prof.disable()
            got.append(spent * 1000)
        polls: list[float] = []
        for _ in range(5 if "--poll" in sys.argv else 0):
            # A node poll (every resync): the state of each node, then a pass
            # that looks at every load balancer (health checks may have moved).
            await asyncio.sleep(0.01)
            nodes.cpu = 0.0
            t0 = time.process_time()
            await op._poll_nodes()
            await op.reconcile()
            polls.append((time.process_time() - t0 - nodes.cpu) * 1000)
        if polls:
            print(
                f"operator CPU per node poll (and the pass after it): {statistics.median(polls):.1f} ms (median of 5)"
            )
        print(
            f"operator CPU per member add at {n_lbs} x {members}: "
            f"{min(got):.1f} / {statistics.median(got):.1f} / {max(got):.1f} ms (min/median/max of {runs})"
        )
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    finally:
        await op.stop()
        await store.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 300
    m = int(args[1]) if len(args) > 1 else 255
    r = int(args[2]) if len(args) > 2 else 15
    asyncio.run(main(n, m, r, "--profile" in sys.argv))
