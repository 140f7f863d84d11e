"""What a load balancer's rules take on each node of its group, and what a
group's nodes hold: services, slot chunks (its Maglev tables,
dataplane/tables.py) and backend entries."""

from __future__ import annotations

from collections.abc import Iterable

from xdsr.dataplane import tables
from xdsr.model.agent import RuleService
from xdsr.model.group import LbnRecord

Cost = tuple[int, int, int]
ZERO: Cost = (0, 0, 0)
UNBOUNDED = 1 << 62


def cost(services: Iterable[RuleService]) -> Cost:
    n = chunks = backends = 0
    for s in services:
        n += 1
        chunks += tables.slot_chunks(s.table_size or 0, len(s.backends))
        # Entries of the backend array, as the node's apply takes them: more
        # than one per backend behind tunnels.
        backends += tables.backend_entries(len(s.backends), tables.stride(s.backends, s.segment.overlay))
    return (n, chunks, backends)


def add(a: Cost, b: Cost) -> Cost:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def sub(a: Cost, b: Cost) -> Cost:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def capacity(nodes: list[LbnRecord]) -> Cost:
    """What every one of these nodes holds (0 of anything: no live node;
    a size a node did not tell is not bounded)."""
    if not nodes:
        return ZERO
    return (
        min(n.max_services for n in nodes),
        min(n.slot_chunks or UNBOUNDED for n in nodes),
        min(n.backend_slots or UNBOUNDED for n in nodes),
    )


_WHAT = ("services", "slot chunks", "backend entries")


def describe(c: Cost) -> str:
    return ", ".join(f"{v} {w}" if v < UNBOUNDED // 2 else f"any number of {w}" for v, w in zip(c, _WHAT, strict=True))


def short(needs: Cost, capacity: Cost) -> str | None:
    """What does not fit, or None."""
    over = [f"{n} {w} of {c}" for n, c, w in zip(needs, capacity, _WHAT, strict=True) if n > c]
    return "it would take " + ", ".join(over) if over else None
