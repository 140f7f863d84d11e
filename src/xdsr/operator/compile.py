"""From a load balancer (the user's intent) to the rules its LB nodes apply."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from xdsr.maglev import stable_table_size
from xdsr.model.agent import HealthCheck, RuleBackend, RuleService
from xdsr.model.loadbalancer import HealthMonitor, LoadBalancer

ServiceKey = tuple[str, int, str, str, int]  # vip, port, protocol, segment type, segment id


def service_id(lb_id: str, listener_id: str) -> str:
    return f"{lb_id}/{listener_id}"


def service_key(s: RuleService) -> ServiceKey:
    return (str(s.vip), s.port, s.protocol, s.segment.type, s.segment.id)


# What a member's backend is made of (member.py, compile_lb): the same
# values make the same backend, which is then not built again.
BackendKey = tuple[object, ...]


def compile_lb(
    lb: LoadBalancer,
    built: Mapping[BackendKey, RuleBackend] | None = None,
    used: dict[BackendKey, RuleBackend] | None = None,
) -> list[RuleService]:
    """One service per enabled listener that has a default pool.

    A disabled load balancer or listener is not forwarded at all (its VIP
    traffic reaches the node's stack, which does not own the VIP). A disabled
    member keeps its place with weight 0: Maglev then gives it no slots and
    the other members' slots do not move. A disabled pool keeps the service
    with no backend, so its traffic is dropped and counted.

    built: backends made before (by compile_lb, from the same values) to
    take instead of making them again; used: filled with every backend this
    compile took or made, by what it is made of.
    """
    if lb.deleting or not lb.admin_state_up:
        return []
    pools = {p.id: p for p in lb.pools}
    monitors = {hm.pool_id: hm for hm in lb.healthmonitors if hm.admin_state_up}
    out = []
    for listener in lb.listeners:
        pool = pools.get(listener.default_pool_id or "")
        if not listener.admin_state_up or pool is None:
            continue
        # Built without validation (model_construct): every value comes from
        # a document the API server validated, and validating hundreds of
        # addresses again would cost more than the rest of a reconcile.
        backends = []
        if pool.admin_state_up:
            for m in pool.members:
                seg = m.segment or lb.vip_segment
                # A member on an overlay is (inner MAC, VNI, tunnel endpoint); on a VLAN (MAC, VLAN).
                overlay = seg.overlay
                weight = m.weight if m.admin_state_up else 0
                vtep = m.vtep_address if overlay else None
                key = (
                    m.id,
                    m.address,
                    m.mac_address,
                    seg.type,
                    seg.id,
                    weight,
                    m.monitor_address,
                    m.monitor_port,
                    vtep,
                )
                backend = built.get(key) if built is not None else None
                if backend is None:
                    backend = RuleBackend.model_construct(
                        id=m.id,
                        address=m.address,
                        mac=m.mac_address,
                        vlan=0 if overlay else seg.id,
                        weight=weight,
                        monitor_address=m.monitor_address,
                        monitor_port=m.monitor_port,
                        vni=seg.id if overlay else None,
                        vtep=vtep,
                    )
                if used is not None:
                    used[key] = backend
                backends.append(backend)
        out.append(
            RuleService.model_construct(
                id=service_id(lb.id, listener.id),
                vip=lb.vip_address,
                port=listener.protocol_port,
                protocol="tcp" if listener.protocol == "TCP" else "udp",
                segment=lb.vip_segment,
                table_size=pool.table_size,
                backends=backends,
                health=health_check(monitors[pool.id]) if pool.id in monitors else None,
            )
        )
    return out


# HTTP, HTTPS and TLS-HELLO are checked as a TCP handshake on the port: the
# node builds its checks frame by frame and does not run TCP streams.
_CHECK_TYPES = {"TCP": "tcp", "HTTP": "tcp", "HTTPS": "tcp", "TLS-HELLO": "tcp", "UDP-CONNECT": "udp", "PING": "ping"}


def health_check(hm: HealthMonitor) -> HealthCheck:
    """Octavia's monitor as the nodes run it. Octavia accepts any delay and
    timeout from 0 to 2^31 s; a node checks at most once a second per backend
    and at least once an hour, and waits 1 s to the delay for an answer."""
    delay = min(max(hm.delay, 1), 3600)
    return HealthCheck(
        type=_CHECK_TYPES[hm.type],  # type: ignore[arg-type]
        delay=delay,
        timeout=min(max(hm.timeout, 1), delay),
        rise=hm.max_retries,
        fall=hm.max_retries_down,
    )


def without(services: list[RuleService], down: Mapping[str, Collection[str]]) -> list[RuleService]:
    """The services with the members health checks found down at weight 0:
    they keep their Maglev identity (the others' slots do not move) and get
    no slots until they are back."""
    out = []
    for s in services:
        gone = down.get(s.id)
        if gone:
            backends = [b.model_copy(update={"weight": 0}) if b.id in gone else b for b in s.backends]
            s = s.model_copy(update={"backends": backends})
        out.append(s)
    return out


def sized(services: list[RuleService], placed: list[RuleService] | None) -> list[RuleService]:
    """The services with their table size settled: the pool's own, else the
    size the service has on the nodes now while it still fits the members
    (maglev.stable_table_size), else the default for them.

    Decided here, once for the group, and sent explicitly: an agent left to
    derive the size from the member count would resize on every membership
    change, and a resized table sends nearly every flow to another backend.
    `placed` are the rules the group holds now (in the store, so the sizes
    survive an operator restart).
    """
    now = {s.id: s.table_size for s in placed or ()}
    out = []
    for s in services:
        if s.table_size is None:
            weighted = sum(1 for b in s.backends if b.weight > 0)
            s = s.model_copy(update={"table_size": stable_table_size(now.get(s.id), weighted)})
        out.append(s)
    return out


class Compiled:
    """compile_lb, remembered per load balancer generation: a reconcile pass
    looks at every load balancer, but only a changed one needs compiling,
    and of a changed one only its changed members (one member added to a
    pool of 255 builds one backend).

    It also remembers which of the backends it holds passed the nodes'
    checks (placement.py runs them on every changed load balancer before it
    is pushed): a backend is made of the member's values alone, so one that
    passed them passes them again, and one member added to a pool of 255 is
    checked alone (services.errors, `known`)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, list[RuleService]]] = {}
        self._backends: dict[str, dict[BackendKey, RuleBackend]] = {}  # lb id -> its last compile's backends
        # id() of the backends held above that passed the nodes' checks, with
        # the backend itself: an id stands for that object only while it is
        # alive, and held here it is.
        self._passed: dict[int, RuleBackend] = {}
        self.compiles = 0  # load balancers compiled (for tests)
        self.backends_built = 0
        self.backends_checked = 0  # backends not known to pass the checks (for tests)

    def __call__(self, lb: LoadBalancer) -> list[RuleService]:
        hit = self._cache.get(lb.id)
        if hit is not None and hit[0] == lb.generation and not lb.deleting:
            return hit[1]
        before = self._backends.get(lb.id, {})
        used: dict[BackendKey, RuleBackend] = {}
        out = compile_lb(lb, before, used)
        self.compiles += 1
        # Only what this compile used is kept: a removed member's backend goes.
        had, kept = {id(b) for b in before.values()}, {id(b) for b in used.values()}
        self.backends_built += len(kept - had)
        for gone in had - kept:
            self._passed.pop(gone, None)
        self._backends[lb.id] = used
        self._cache[lb.id] = (lb.generation, out)
        return out

    def passed(self, lb_id: str, services: Iterable[RuleService]) -> None:
        """These services of the load balancer passed the nodes' checks: so
        did their backends (those held here: not a copy made on the way,
        such as a member down at weight 0)."""
        held = {id(b) for b in self._backends.get(lb_id, {}).values()}
        for s in services:
            for b in s.backends:
                if id(b) in held:
                    self._passed[id(b)] = b

    def known(self, backend: RuleBackend) -> bool:
        """Whether this very backend passed the nodes' checks before."""
        if self._passed.get(id(backend)) is backend:
            return True
        self.backends_checked += 1
        return False

    def forget(self, lb_id: str) -> None:
        self._cache.pop(lb_id, None)
        for b in self._backends.pop(lb_id, {}).values():
            self._passed.pop(id(b), None)
