"""What `kubectl get lbngroups` and `kubectl describe lbngroup` show: each
LBNGroup's status (nodes, load balancers, generation, ready, and the
conditions Ready, Progressing and Degraded with a reason) and an Event on
each change of a condition.

It is derived from what the control plane already keeps (the group, its
rules, the live LB nodes, the load balancers and their statuses), so the
operator needs no change and nothing here is read back by any component:
it is the Kubernetes face of the state, written by the operator's process
while it leads (cli/operator.py).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event as KubeEvent

from xdsr.model import keys
from xdsr.model.group import Group, LbnRecord
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.store.base import StoreError
from xdsr.store.kubernetes import API_VERSION, KubernetesStore, object_name

log = logging.getLogger("xdsr.store.kubernetes")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" / "False"
    reason: str
    message: str


def _rules_by_group(keys_: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in keys_:
        group, lb_id = keys.rules_parts(key)
        out.setdefault(group, []).append(lb_id)
    return out


def group_status(
    group: Group, lb_ids: list[str], live: set[str], lbs: dict[str, LoadBalancer],
    statuses: dict[str, LoadBalancerStatus], generation: int,
) -> tuple[dict[str, Any], list[Condition]]:  # fmt: skip
    """The LBNGroup's status and its conditions."""
    nodes = [n for n in group.lbns if n in live]
    pending = [i for i in lb_ids if i in lbs and statuses.get(i, LoadBalancerStatus(id=i)).observed_generation
               < lbs[i].generation]  # fmt: skip
    failed = [i for i in lb_ids if i in statuses and statuses[i].provisioning_status == "ERROR"]
    missing = [n for n in group.lbns if n not in live]
    conditions = [
        Condition("Ready", "True" if nodes and not pending else "False",
                  "AllObserved" if nodes and not pending else ("NoLiveNodes" if not nodes else "RulesPending"),
                  f"{len(nodes)}/{len(group.lbns)} LB nodes live; {len(lb_ids) - len(pending)}/{len(lb_ids)} "
                  "load balancers observed on every node"),
        Condition("Progressing", "True" if pending else "False", "RulesPending" if pending else "UpToDate",
                  f"waiting for {len(pending)} load balancers" if pending else "every change applied"),
        Condition("Degraded", "True" if (failed or missing) else "False",
                  "LoadBalancerError" if failed else ("NodeMissing" if missing else "AsExpected"),
                  (f"in ERROR: {', '.join(sorted(failed)[:5])}" if failed else
                   f"not live: {', '.join(sorted(missing))}" if missing else "all nodes live, no errors")),
    ]  # fmt: skip
    status = {
        "nodes": len(nodes),
        "loadBalancers": len(lb_ids),
        "generation": generation,
        "ready": f"{len(nodes)}/{len(group.lbns)}",
    }
    return status, conditions


class GroupStatusWriter:
    """Writes every LBNGroup's status subresource, and an Event per condition change."""

    def __init__(self, store: KubernetesStore, interval: float = 2.0) -> None:
        self.store = store
        self.interval = interval
        self._last: dict[str, dict[str, Condition]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.pass_once()
            except (StoreError, ApiError) as exc:
                log.warning("LBNGroup status: %s", exc)
            await asyncio.sleep(self.interval)

    async def pass_once(self) -> None:
        s = self.store
        groups, _ = await s.list(keys.GROUP_PREFIX)
        rules, _ = await s.list(keys.RULES_PREFIX)
        lbns, _ = await s.list(keys.LBN_PREFIX)
        lb_items, _ = await s.list(keys.LB_PREFIX)
        status_items, _ = await s.list(keys.STATUS_PREFIX)
        live = {LbnRecord.model_validate_json(i.value).name for i in lbns}
        lbs = {keys.last_part(i.key): LoadBalancer.model_validate_json(i.value) for i in lb_items}
        statuses = {keys.last_part(i.key): LoadBalancerStatus.model_validate_json(i.value) for i in status_items}
        by_group = _rules_by_group([i.key for i in rules])
        revs: dict[str, int] = {}
        for i in rules:
            g = keys.rules_parts(i.key)[0]
            revs[g] = max(revs.get(g, 0), i.mod_revision)
        for item in groups:
            group = Group.model_validate_json(item.value)
            generation = max(revs.get(group.name, 0), item.mod_revision)
            status, conditions = group_status(group, by_group.get(group.name, []), live, lbs, statuses, generation)
            await self._write(group.name, status, conditions)

    async def _write(self, name: str, status: dict[str, Any], conditions: list[Condition]) -> None:
        s = self.store
        obj_name = object_name(keys.group_key(name))
        current = await s._get_obj("lbngroups", obj_name)
        if current is None:
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        before = {c["type"]: c for c in (current.get("status") or {}).get("conditions") or []}
        out = []
        for c in conditions:
            old = before.get(c.type)
            since = old["lastTransitionTime"] if old and old.get("status") == c.status else now
            out.append({"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
                        "observedGeneration": current["metadata"].get("generation", 0),
                        "lastTransitionTime": since})  # fmt: skip
        new = {**status, "conditions": out}
        if current.get("status") != new:
            body = {**{k: v for k, v in current.items() if k != "status"}, "status": new}
            try:
                await s._request("PUT", "lbngroups", obj_name, body=body, status=True)
            except ApiError as exc:
                if exc.status.code != 409:  # a newer group: the next pass writes its status
                    raise
                return
        seen = self._last.setdefault(name, {})
        for c in conditions:
            old_c = seen.get(c.type)
            if old_c is not None and (old_c.status, old_c.reason) != (c.status, c.reason):
                await self._event(current, c)
            seen[c.type] = c

    async def _event(self, obj: dict[str, Any], c: Condition) -> None:
        meta = obj["metadata"]
        warning = (c.type, c.status) in (("Degraded", "True"), ("Ready", "False"))
        event = KubeEvent(
            metadata=ObjectMeta(generateName=f"{meta['name']}.", namespace=self.store.namespace),
            involvedObject=ObjectReference(apiVersion=API_VERSION, kind="LBNGroup", name=meta["name"],
                                           namespace=self.store.namespace, uid=meta.get("uid"),
                                           resourceVersion=meta.get("resourceVersion")),
            reason=c.reason, message=f"{c.type}={c.status}: {c.message}", type="Warning" if warning else "Normal",
            source=EventSource(component="xdsr-operator"), count=1,
            firstTimestamp=datetime.datetime.now(datetime.UTC), lastTimestamp=datetime.datetime.now(datetime.UTC),
        )  # fmt: skip
        try:
            await self.store._client.create(event, namespace=self.store.namespace)
        except ApiError as exc:
            log.warning("event on LBNGroup %s: %s", meta["name"], exc)
