"""The operator's Prometheus metrics.

Counters and histograms are module-level (the process's default registry,
which `xdsr operator --metrics-listen` and, under `xdsr up`, the API
server's /metrics serve); the operator calls the hooks below at the few
points that matter. Gauges of what the operator sees (load balancers by
status, nodes reachable) are read from every live Operator at scrape time.
"""

from __future__ import annotations

import weakref
from collections import Counter as Tally
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from xdsr.model.bgp import parse_summary

if TYPE_CHECKING:
    from xdsr.operator.view import View

RECONCILE_SECONDS = Histogram(
    "xdsr_operator_reconcile_duration_seconds",
    "Time of one reconcile pass (placement, pushes scheduled, statuses written)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RECONCILE_ERRORS = Counter("xdsr_operator_reconcile_errors_total", "Reconcile passes that failed and were retried")
PUSHES = Counter("xdsr_operator_pushes_total", "Desired states pushed to an LB node and accepted", ["node"])
PUSH_FAILURES = Counter(
    "xdsr_operator_push_failures_total", "Pushes to an LB node that failed (unreachable, refused)", ["node"]
)

PUSH_BACKOFF = Gauge(
    "xdsr_operator_push_backoff_seconds",
    "Delay before the next push to an LB node after failed ones in a row (0: the last push went through)",
    ["node"],
)
REFUSED = Counter(
    "xdsr_operator_refused_total",
    "Load balancers (generations) taken off their group because an LB node refused their rules",
    ["node"],
)

POLLS = Counter(
    "xdsr_operator_polls_total",
    "Polls of an LB node's state taken, by answer: whole (every report) or since (what changed since the last)",
    ["node", "answer"],
)
POLL_ITEMS = Counter(
    "xdsr_operator_poll_items_total",
    "Service reports and service counters the polls of an LB node carried (a quiet node's poll carries none)",
    ["node"],
)


def polled(node: str, whole: bool, items: int) -> None:
    POLLS.labels(node, "whole" if whole else "since").inc()
    POLL_ITEMS.labels(node).inc(items)


def pushed(node: str) -> None:
    PUSHES.labels(node).inc()


def push_failed(node: str) -> None:
    PUSH_FAILURES.labels(node).inc()


def push_backoff(node: str, seconds: float) -> None:
    PUSH_BACKOFF.labels(node).set(seconds)


def refused(node: str, n: int) -> None:
    REFUSED.labels(node).inc(n)


class _Seen(Collector):
    """What the live operators see, read when scraped."""

    def __init__(self) -> None:
        self.operators: weakref.WeakSet[View] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        lbs = GaugeMetricFamily(
            "xdsr_loadbalancers",
            "Load balancers by provisioning and operating status (as last written back)",
            labels=["provisioning_status", "operating_status"],
        )
        nodes = GaugeMetricFamily(
            "xdsr_operator_node_up",
            "1 if the LB node is registered and answered the operator's last request, else 0",
            labels=["node"],
        )
        bgp = GaugeMetricFamily(
            "xdsr_operator_node_bgp_up",
            "1 if the LB node announces its VIPs with every BGP session up (as it registered), else 0; "
            "nodes that speak no BGP are absent",
            labels=["node"],
        )
        tally: Tally[tuple[str, str]] = Tally()
        for op in list(self.operators):
            for lb in op.lbs.values():
                st = op.statuses.get(lb.id)
                if st is None:
                    tally["PENDING_CREATE", "OFFLINE"] += 1
                else:
                    tally[st.provisioning_status, st.operating_status] += 1
            live = op._live()
            for name, node in list(op.nodes.items()):
                nodes.add_metric([name], 1.0 if name in live and node.error is None else 0.0)
                said = node.record.bgp if node.record is not None else None
                if said is not None:
                    bgp.add_metric([name], 1.0 if bgp_up(said) else 0.0)
        for (prov, oper), n in sorted(tally.items()):
            lbs.add_metric([prov, oper], n)
        yield lbs
        yield nodes
        yield bgp

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("xdsr_loadbalancers", "", labels=["provisioning_status", "operating_status"])
        yield GaugeMetricFamily("xdsr_operator_node_up", "", labels=["node"])
        yield GaugeMetricFamily("xdsr_operator_node_bgp_up", "", labels=["node"])


_SEEN = _Seen()
REGISTRY.register(_SEEN)


def bgp_up(said: str) -> bool:
    """A node's registered BGP state (model.group.LbnRecord.bgp): announcing, no session down."""
    return parse_summary(said).announcing


def watch(view: View) -> None:
    """Report what this operator sees, as long as it lives."""
    _SEEN.operators.add(view)
