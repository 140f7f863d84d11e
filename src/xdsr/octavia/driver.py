"""The xdsr provider driver, as Octavia's API loads it (entry point
`octavia.api.drivers` → `xdsr`).

Octavia calls a driver inside its database transaction and creates a new
driver object for every request. So each method here only

1. refuses, with UnsupportedOptionError and the words the xdsr API server
   would answer (validate.py maps the object into the xdsr API's schema),
   what L2 direct server return cannot do (Octavia answers 501 and rolls
   the request back: nothing is left anywhere), and
2. queues the change in the spool directory (xdsr.octavia.spool) and
   returns — no call to xdsr, nothing kept in the object.

The provider agent (xdsr.octavia.agent), in octavia-driver-agent, applies
queued changes to the xdsr API server once Octavia has committed them and
reports statuses back; see docs/octavia.md for why the work is split so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from octavia_lib.api.drivers import data_models as dm
from octavia_lib.api.drivers import driver_lib, provider_base
from octavia_lib.api.drivers import exceptions as lib_exc
from oslo_config import cfg

from xdsr.api import l2dsr
from xdsr.octavia import config, spool, validate

LOG = logging.getLogger(__name__)

T = TypeVar("T")


def _dict(obj: Any) -> dict[str, Any]:
    """A provider object as a plain dict without the attributes the request left unset."""
    if obj is None or isinstance(obj, dm.UnsetType):
        return {}
    if isinstance(obj, dict):
        return obj
    out: dict[str, Any] = obj.to_dict(recurse=True, render_unsets=False)
    return out


def _without(obj: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in names}


def _refuse(check: Callable[[], T]) -> T:
    try:
        return check()
    except validate.Refused as exc:
        raise lib_exc.UnsupportedOptionError(user_fault_string=str(exc), operator_fault_string=str(exc)) from None


class XdsrProviderDriver(provider_base.ProviderDriver):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        config.register()

    # --- plumbing (no state: everything derives from configuration) ---

    @staticmethod
    def _queue(op: str, lb_id: str | None = None, **fields: Any) -> None:
        conf = cfg.CONF
        try:
            spool.put(conf.xdsr.spool_dir, {"op": op, "lb_id": lb_id, **fields})
        except OSError as exc:
            # Nothing was queued: let Octavia roll the request back rather
            # than leave an object no one will ever bring out of PENDING.
            LOG.error("xdsr: cannot queue %s in %s: %s", op, conf.xdsr.spool_dir, exc)
            raise lib_exc.DriverError(
                user_fault_string="The xdsr provider could not accept the request; retry later.",
                operator_fault_string=f"cannot write the xdsr spool {conf.xdsr.spool_dir}: {exc}",
            ) from None

    @staticmethod
    def _library() -> driver_lib.DriverLibrary:
        conf = cfg.CONF
        sockets = (
            conf.driver_agent.status_socket_path,
            conf.driver_agent.stats_socket_path,
            conf.driver_agent.get_socket_path,
        )
        # DriverLibrary() itself would wait minutes for missing sockets,
        # inside the user's request.
        missing = [p for p in sockets if not os.path.exists(p)]
        if missing:
            raise lib_exc.DriverError(
                user_fault_string="The xdsr provider is not available; retry later.",
                operator_fault_string=f"octavia-driver-agent is not running (no {missing[0]})",
            )
        return driver_lib.DriverLibrary(
            status_socket=conf.driver_agent.status_socket_path,
            stats_socket=conf.driver_agent.stats_socket_path,
            get_socket=conf.driver_agent.get_socket_path,
        )

    def _listener_port_of_pool(self, pool_id: str | None) -> int | None:
        """The protocol_port of the listener whose default pool this is, if
        any: members must listen on it (L2DSR does not translate ports).
        Reads Octavia's committed state through the driver agent."""
        if not pool_id:
            return None
        lib = self._library()
        pool = lib.get_pool(pool_id)
        listener_id = getattr(pool, "listener_id", None) if pool is not None else None
        if not listener_id or isinstance(listener_id, dm.UnsetType):
            return None
        listener = lib.get_listener(listener_id)
        port = getattr(listener, "protocol_port", None) if listener is not None else None
        return port if isinstance(port, int) else None

    # --- load balancers ---

    def create_vip_port(self, loadbalancer_id: str, project_id: str, vip_dictionary: dict[str, Any], *args: Any) -> Any:
        # Octavia (with Neutron) allocates the VIP; the LB nodes need only its address.
        raise lib_exc.NotImplementedError(user_fault_string="xdsr lets Octavia allocate the VIP port")

    def loadbalancer_create(self, loadbalancer: dm.LoadBalancer) -> None:
        lb = _dict(loadbalancer)
        group = _refuse(lambda: validate.loadbalancer(lb))
        self._queue("loadbalancer_create", lb["loadbalancer_id"], object=lb, lbn_group=group)

    def loadbalancer_update(self, old_loadbalancer: dm.LoadBalancer, new_loadbalancer: dm.LoadBalancer) -> None:
        old, new = _dict(old_loadbalancer), _dict(new_loadbalancer)
        lb_id = new.get("loadbalancer_id") or old["loadbalancer_id"]
        # Judged as the load balancer it makes; its children are not part of the change.
        _refuse(lambda: validate.loadbalancer({**old, **new, "listeners": [], "pools": []}))
        self._queue("loadbalancer_update", lb_id, object=new)

    def loadbalancer_delete(self, loadbalancer: dm.LoadBalancer, cascade: bool = False) -> None:
        lb = _dict(loadbalancer)
        self._queue("loadbalancer_delete", lb["loadbalancer_id"], object=lb, cascade=cascade)

    def loadbalancer_failover(self, loadbalancer_id: str) -> None:
        # Nothing to fail over (every LB node of the group serves the VIP):
        # a failover re-applies the load balancer to xdsr from Octavia's
        # state, the way to retry after an ERROR.
        self._queue("loadbalancer_failover", loadbalancer_id)

    # --- listeners ---

    def listener_create(self, listener: dm.Listener) -> None:
        li = _dict(listener)
        _refuse(lambda: validate.listener(li))
        if li.get("default_pool_id") and not li.get("default_pool"):
            self._check_pool_ports(li["default_pool_id"], li.get("protocol_port"))
        self._queue("listener_create", li.get("loadbalancer_id"), object=li)

    def listener_update(self, old_listener: dm.Listener, new_listener: dm.Listener) -> None:
        old, new = _dict(old_listener), _dict(new_listener)
        merged = {**old, **new}
        _refuse(lambda: validate.listener(_without(merged, "default_pool")))
        if new.get("default_pool_id") and new.get("default_pool_id") != old.get("default_pool_id"):
            self._check_pool_ports(new["default_pool_id"], merged.get("protocol_port"))
        self._queue("listener_update", old.get("loadbalancer_id"), object={**new, "listener_id": old["listener_id"]})

    def _check_pool_ports(self, pool_id: str, port: object) -> None:
        pool = self._library().get_pool(pool_id)
        if pool is not None:
            _refuse(lambda: validate.members_fit_port(_dict(pool), {"protocol_port": port}, "listener.default_pool"))

    def listener_delete(self, listener: dm.Listener) -> None:
        li = _dict(listener)
        self._queue("listener_delete", li.get("loadbalancer_id"), object=li)

    # --- pools ---

    def pool_create(self, pool: dm.Pool) -> None:
        p = _dict(pool)
        _refuse(lambda: validate.pool(p))
        listener_id = p.get("listener_id")
        if listener_id:
            listener = self._library().get_listener(listener_id)
            if listener is not None:
                _refuse(lambda: validate.pool_fits_listener(p, _dict(listener)))
        self._queue("pool_create", p.get("loadbalancer_id"), object=p)

    def pool_update(self, old_pool: dm.Pool, new_pool: dm.Pool) -> None:
        old, new = _dict(old_pool), _dict(new_pool)
        _refuse(lambda: validate.pool(_without({**old, **new}, "members", "healthmonitor")))
        self._queue("pool_update", old.get("loadbalancer_id"), object={**new, "pool_id": old["pool_id"]})

    def pool_delete(self, pool: dm.Pool) -> None:
        p = _dict(pool)
        self._queue("pool_delete", p.get("loadbalancer_id"), object=p)

    # --- members ---

    def member_create(self, member: dm.Member) -> None:
        m = _dict(member)
        _refuse(lambda: validate.member(m))
        port = self._listener_port_of_pool(m.get("pool_id"))
        _refuse(lambda: validate.member_port(m, port))
        self._queue("member_create", object=m)

    def member_update(self, old_member: dm.Member, new_member: dm.Member) -> None:
        old, new = _dict(old_member), _dict(new_member)
        _refuse(lambda: validate.member({**old, **new}))
        self._queue("member_update", object={**new, "member_id": old["member_id"], "pool_id": old.get("pool_id")})

    def member_delete(self, member: dm.Member) -> None:
        self._queue("member_delete", object=_dict(member))

    def member_batch_update(self, pool_id: str, members: list[dm.Member]) -> None:
        ms = [_dict(m) for m in members]
        port = self._listener_port_of_pool(pool_id)
        for i, m in enumerate(ms):
            _refuse(lambda m=m, i=i: validate.member(m, f"members[{i}]"))
            _refuse(lambda m=m, i=i: validate.member_port(m, port, f"members[{i}]"))
        self._queue("member_batch_update", pool_id=pool_id, members=ms)

    # --- health monitors ---

    def health_monitor_create(self, healthmonitor: dm.HealthMonitor) -> None:
        hm = _dict(healthmonitor)
        pool = self._library().get_pool(hm["pool_id"]) if hm.get("pool_id") else None
        protocol = getattr(pool, "protocol", None) if pool is not None else None
        _refuse(lambda: validate.healthmonitor(hm, pool_protocol=protocol))
        self._queue("health_monitor_create", object=hm)

    def health_monitor_update(self, old_healthmonitor: dm.HealthMonitor, new_healthmonitor: dm.HealthMonitor) -> None:
        old, new = _dict(old_healthmonitor), _dict(new_healthmonitor)
        _refuse(lambda: validate.healthmonitor({**old, **new}))
        obj = {**new, "healthmonitor_id": old["healthmonitor_id"], "pool_id": old.get("pool_id")}
        self._queue("health_monitor_update", object=obj)

    def health_monitor_delete(self, healthmonitor: dm.HealthMonitor) -> None:
        self._queue("health_monitor_delete", object=_dict(healthmonitor))

    # --- L7: never ---

    def _no_l7(self, *_: Any) -> None:
        raise lib_exc.UnsupportedOptionError(user_fault_string=l2dsr.L7, operator_fault_string=l2dsr.L7)

    l7policy_create = l7policy_update = l7policy_delete = _no_l7
    l7rule_create = l7rule_update = l7rule_delete = _no_l7

    # --- flavors and availability zones ---

    def get_supported_flavor_metadata(self) -> dict[str, str]:
        return dict(validate.FLAVOR_METADATA)

    def validate_flavor(self, flavor_metadata: dict[str, Any]) -> None:
        _refuse(lambda: validate.flavor_metadata(flavor_metadata))

    def get_supported_availability_zone_metadata(self) -> dict[str, str]:
        return dict(validate.AZ_METADATA)

    def validate_availability_zone(self, availability_zone_metadata: dict[str, Any]) -> None:
        _refuse(lambda: validate.az_metadata(availability_zone_metadata))
