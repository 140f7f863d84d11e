"""Where each document lives in the store.

/xdsr/lb/<lb id>        LoadBalancer: the user's intent (API server writes)
/xdsr/status/<lb id>    LoadBalancerStatus (operator writes)
/xdsr/groups/<group>    Group: the group's LB nodes and epoch (operator writes)
/xdsr/rules/<group>/<lb id>  PlacedLoadBalancer: the rules of one LB placed on the group
                        (operator writes); with the group document, the group's one resource
/xdsr/lbns/<name>       LbnRecord: a live LB node, on a lease (its agent writes)
/xdsr/quotas/<project>  Quota: a project's limits (API server writes)
/xdsr/quota-defaults    Quota: the default limits (API server writes)
"""

from __future__ import annotations

ROOT = "/xdsr/"
LB_PREFIX = ROOT + "lb/"
STATUS_PREFIX = ROOT + "status/"
GROUP_PREFIX = ROOT + "groups/"
RULES_PREFIX = ROOT + "rules/"
LBN_PREFIX = ROOT + "lbns/"
QUOTA_PREFIX = ROOT + "quotas/"
QUOTA_DEFAULTS = ROOT + "quota-defaults"


def lb_key(lb_id: str) -> str:
    return LB_PREFIX + lb_id


def status_key(lb_id: str) -> str:
    return STATUS_PREFIX + lb_id


def group_key(name: str) -> str:
    return GROUP_PREFIX + name


def rules_key(group: str, lb_id: str) -> str:
    return f"{RULES_PREFIX}{group}/{lb_id}"


def rules_parts(key: str) -> tuple[str, str]:
    """(group, lb id) of a rules key."""
    group, lb_id = key[len(RULES_PREFIX) :].split("/", 1)
    return group, lb_id


def lbn_key(name: str) -> str:
    return LBN_PREFIX + name


def quota_key(project_id: str) -> str:
    return QUOTA_PREFIX + project_id


def last_part(key: str) -> str:
    return key.rsplit("/", 1)[1]
