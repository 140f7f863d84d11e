"""Prometheus metrics of one agent.

Data-plane counters are read from the maps when Prometheus scrapes (a
custom collector), never polled: a scrape costs one lookup per service and
per verdict reason, and an idle agent does nothing. The collector runs on
the agent's data-plane thread (see Agent.metrics_text), like every other
map access, so it never races an apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from xdsr.dataplane import abi
from xdsr.dataplane.loader import MODES, xdp_prog_id
from xdsr.dataplane.netns import link
from xdsr.dataplane.state import Usage, installed, read_stats, usage

if TYPE_CHECKING:
    from xdsr.agent.core import Agent


class AgentMetrics:
    """The agent's own instruments, and the registry that exposes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        # process_*, python_gc_*, python_info: as every xdsr component exports.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.apply_seconds = Histogram(
            "xdsr_agent_apply_seconds",
            "Time to apply a desired state to the data plane (build changed tables, swap them in)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.applies = Counter(
            "xdsr_agent_applies",
            "Applies to the data plane, by trigger (put: a PUT; resolve: a member's MAC appeared or changed) "
            "and result",
            ["trigger", "result"],
            registry=self.registry,
        )
        self.drift_repairs = Counter(
            "xdsr_dataplane_drift_repairs",
            "Times the kernel's tables were found changed by someone else and re-applied (agent/drift.py)",
            registry=self.registry,
        )
        self.resolutions = Counter(
            "xdsr_agent_resolutions",
            "Outcomes of MAC resolution questions: resolved (first MAC), confirmed, changed, timeout",
            ["family", "result"],
            registry=self.registry,
        )

    def register_agent(self, agent: Agent) -> None:
        self.registry.register(_AgentCollector(agent))


class _AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self.agent
        # What the kernel holds, read now: not what the agent last applied,
        # which differs after drift until the repair.
        held = installed(a.dp)
        labels = a.rule_ids
        stats = read_stats(a.dp, held)

        svc_labels = ["service", "vip", "port", "protocol", "segment"]
        pkts = CounterMetricFamily("xdsr_service_packets", "Packets forwarded per service", labels=svc_labels)
        byts = CounterMetricFamily("xdsr_service_bytes", "Bytes forwarded per service", labels=svc_labels)
        for key, c in sorted(stats.services.items()):
            lv = [
                labels.get(key, ""),  # "" for a service an earlier agent installed, not (yet) re-sent
                str(key.vip),
                str(key.port),
                key.protocol,
                f"{key.seg_type.name.lower()}:{key.seg_id}",
            ]
            pkts.add_metric(lv, c.packets)
            byts.add_metric(lv, c.bytes)
        yield pkts
        yield byts

        rp = CounterMetricFamily(
            "xdsr_dataplane_packets", "Packets by verdict reason (details count twice)", labels=["reason", "verdict"]
        )
        rb = CounterMetricFamily("xdsr_dataplane_bytes", "Bytes by verdict reason", labels=["reason", "verdict"])
        for reason, c in stats.reasons.items():
            lv = [reason.name.lower(), abi.REASON_VERDICT[reason]]
            rp.add_metric(lv, c.packets)
            rb.add_metric(lv, c.bytes)
        yield rp
        yield rb

        yield GaugeMetricFamily(
            "xdsr_agent_generation", "Generation of the desired state last applied (0: none since start)", a.generation
        )
        yield GaugeMetricFamily("xdsr_agent_services", "Services the kernel's tables hold", len(held))
        yield from _capacity(usage(a.dp))
        yield from _xdp(a)
        yield GaugeMetricFamily(
            "xdsr_agent_unresolved_members",
            "Members of the desired state left out of the tables because their MAC is unknown",
            sum(len(b.unresolved) for b in a.built),
        )
        nb = GaugeMetricFamily(
            "xdsr_agent_neighbors",
            "Addresses the agent resolves, by state (stale: the last refresh went unanswered, MAC kept)",
            labels=["state"],
        )
        for state, n in a.neighbors.counts().items():
            nb.add_metric([state], n)
        yield nb
        probes = CounterMetricFamily(
            "xdsr_agent_resolve_probes", "ARP probes / Neighbor Solicitations sent", labels=["family"]
        )
        errors = CounterMetricFamily(
            "xdsr_agent_resolve_send_errors", "Probes the trunk socket refused to send", labels=["family"]
        )
        answers = CounterMetricFamily(
            "xdsr_agent_resolve_answers", "Answers matched to an outstanding question", labels=["family"]
        )
        for fam in ("ipv4", "ipv6"):
            probes.add_metric([fam], a.resolver.probes_sent[fam])
            errors.add_metric([fam], a.resolver.send_errors[fam])
            answers.add_metric([fam], a.resolver.answers[fam])
        yield probes
        yield errors
        yield answers
        yield CounterMetricFamily(
            "xdsr_agent_resolve_unsolicited", "Answers nobody asked for (ignored)", a.resolver.ignored
        )
        if a.health is not None:
            checks = CounterMetricFamily(
                "xdsr_agent_health_checks", "Health checks of backends, by type and result", labels=["type", "result"]
            )
            for (kind, result), n in sorted(a.health.checks.items()):
                checks.add_metric([kind, result], n)
            yield checks
            yield GaugeMetricFamily(
                "xdsr_agent_health_down",
                "Backends (checks) this node's health checks find down",
                sum(1 for st in a.health.states.values() if not st.up),
            )
            yield GaugeMetricFamily(
                "xdsr_agent_health_unchecked",
                "Members of checked services this node cannot check (no address, MAC or health source)",
                sum(1 for mine in a.health_targets.values() for t in mine.values() if t is None),
            )
            yield CounterMetricFamily(
                "xdsr_agent_health_neighbor_answers",
                "ARP replies / Neighbor Advertisements sent for the node's health sources",
                a.health.neighbor_answers,
            )
        if a.registration is not None:
            yield GaugeMetricFamily(
                "xdsr_agent_registered", "1 while the node's record is in the store", int(a.registration.registered)
            )
        if a.bgp is not None:
            yield from _bgp_metrics(a)
        info = InfoMetricFamily("xdsr_agent", "The agent", labels=["name", "iface", "version"])
        info.add_metric([a.config.name, a.config.iface, a.version], {})
        yield info


def _bgp_metrics(a: Agent) -> Iterator[Metric]:
    """From the speaker's last look at BIRD (every check_interval), not a new one."""
    sp = a.bgp
    assert sp is not None
    up = GaugeMetricFamily(
        "xdsr_bgp_session_up", "1 while the BGP session with the peer is established", labels=["peer"]
    )
    routes = GaugeMetricFamily(
        "xdsr_bgp_announced_routes", "VIP prefixes this node announces to the peer", labels=["peer"]
    )
    for name in sp.cfg.peer_names():
        up.add_metric([name], int(sp.session_up(name)))
        routes.add_metric([name], len(sp.written.get(name, ())))
    yield up
    yield routes
    yield GaugeMetricFamily("xdsr_bgp_drained", "1 while the node is drained (announces nothing)", int(sp.drained))
    yield GaugeMetricFamily(
        "xdsr_bgp_withdrawn",
        "1 while the node announces nothing for a reason other than a drain (XDP program gone, stopping...)",
        int(sp.reason is not None and not sp.drained),
    )


def _capacity(u: Usage) -> Iterator[Metric]:
    """How full the maps are: the operator places no more than max_services
    on a node, and a table needs room for its new copy while the old serves."""
    yield GaugeMetricFamily("xdsr_dataplane_services_max", "Services the maps hold at most", u.max_services)
    yield GaugeMetricFamily(
        "xdsr_dataplane_table_memory_bytes", "Bytes of Maglev slots the maps hold, all tables together", u.table_memory
    )
    yield GaugeMetricFamily(
        "xdsr_dataplane_table_memory_free_bytes",
        "Bytes of Maglev slots no live table uses (not necessarily in one piece)",
        u.table_memory_free,
    )
    yield GaugeMetricFamily("xdsr_dataplane_backends_max", "Backend entries the maps hold", u.backends)
    yield GaugeMetricFamily("xdsr_dataplane_backends_used", "Backend entries live tables use", u.backends_used)


def _xdp(a: Agent) -> Iterator[Metric]:
    """The program the trunk runs, asked of the kernel: id 0 when none runs
    (someone detached it), whatever the agent attached at start."""
    prog = GaugeMetricFamily(
        "xdsr_dataplane_xdp_program_id",
        "Id of the XDP program the trunk runs, by mode (native, generic; none with 0 when nothing runs)",
        labels=["iface", "mode"],
    )
    found = False
    try:
        ifindex = link(a.config.iface, a.config.netns).index
        for mode in MODES:
            prog_id = xdp_prog_id(ifindex, netns=a.config.netns, mode=mode)
            if prog_id:
                prog.add_metric([a.config.iface, mode], prog_id)
                found = True
    except (LookupError, OSError):
        pass
    if not found:
        prog.add_metric([a.config.iface, "none"], 0)
    yield prog
