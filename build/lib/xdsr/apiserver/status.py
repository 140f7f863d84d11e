"""provisioning_status and operating_status, derived as Kubernetes derives a
rollout's progress from observedGeneration.

The API server stores intent only; the operator writes LoadBalancerStatus.
What a client sees:

- PENDING_DELETE while the load balancer's deletion is requested (`deleting`);
- PENDING_CREATE while the operator has not written a status yet, or has
  observed nothing yet (observed_generation 0);
- for a child object, PENDING_CREATE while the operator's status maps do not
  know it yet and PENDING_UPDATE while they do but observed_generation is
  older than the object's generation (the load balancer itself: PENDING_UPDATE
  while observed_generation < its generation);
- otherwise what the operator reported (ACTIVE or ERROR);
- except that an ERROR the operator reported for the current generation
  (`computed_for`) shows at once, even if it never became observed (a load
  balancer no group of LB nodes can take, say): it is not pending anything.

operating_status is OFFLINE while pending creation, else the operator's.
"""

from __future__ import annotations

from typing import Literal

from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus, ObjectStatus

ChildMap = Literal["listeners", "pools", "members", "healthmonitors"]
Statuses = tuple[str, str]  # (provisioning_status, operating_status)


def lb_statuses(lb: LoadBalancer, st: LoadBalancerStatus | None) -> Statuses:
    if lb.deleting:
        return "PENDING_DELETE", st.operating_status if st else "OFFLINE"
    if st is not None and st.provisioning_status == "ERROR" and st.computed_for == lb.generation:
        return "ERROR", st.operating_status
    if st is None or st.observed_generation == 0:
        return "PENDING_CREATE", "OFFLINE"
    if st.observed_generation < lb.generation:
        return "PENDING_UPDATE", st.operating_status
    return st.provisioning_status, st.operating_status


def child_statuses(
    lb: LoadBalancer, st: LoadBalancerStatus | None, kind: ChildMap, obj_id: str, generation: int
) -> Statuses:
    known: ObjectStatus | None = getattr(st, kind).get(obj_id) if st else None
    if lb.deleting:
        return "PENDING_DELETE", known.operating_status if known else "OFFLINE"
    if st is None or st.observed_generation == 0:
        return "PENDING_CREATE", "OFFLINE"
    if st.observed_generation < generation:
        if known is None:
            return "PENDING_CREATE", "OFFLINE"
        return "PENDING_UPDATE", known.operating_status
    if known is None:
        # Observed, but the operator reports nothing for this object: it
        # shares the load balancer's fate.
        return st.provisioning_status, st.operating_status
    return known.provisioning_status, known.operating_status
