"""Members' MACs, networks' segments and hosts' tunnel endpoints from
Neutron, through openstacksdk.

An LB node forwards a frame to a member by rewriting it: on a VLAN its
destination MAC and VLAN, on a VXLAN or Geneve network its inner
destination MAC, its VNI and its outer destination, the tunnel endpoint of
the member's hypervisor. So xdsr needs, for each member, the MAC of its
Neutron port, the segment of its network — what the paper's driver asked
Neutron for (section II) — and, on an overlay, the endpoint of the host the
port is bound to. The port is found by the member's address on its subnet;
the segment from the subnet's segment (routed provider networks) or the
network's provider attributes (`provider:network_type` vlan, flat, vxlan or
geneve, and `provider:segmentation_id`); anything else (gre, local) is an
error with its reason.

The tunnel endpoint follows Neutron's own convention, the one its L2
population driver uses: the port's `binding:host_id` names the host, and
the L2 agent on that host (Open vSwitch or Linux bridge) reports its
endpoint as `configurations.tunneling_ip` in the agents API. OVN's agents
report no endpoint there (the chassis' encap IP is in OVN's southbound
database only): give those in `[xdsr] tunnel_endpoints` (host:address). A
member whose endpoint is not known is an error that says so: the LB nodes
cannot send it a frame.

Answers are kept for `cache_seconds` (a pool of 200 members is looked up
once, not at every change of the load balancer); a port bound to another
host (a live migration) is seen when its answer expires.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Segment = dict[str, Any]

OVERLAYS = ("vxlan", "geneve")


class NeutronLookupError(LookupError):
    """Neutron does not know what xdsr needs; the message says what."""


def _segment(network_type: str | None, segmentation_id: int | None, what: str) -> Segment:
    if network_type in ("vlan", *OVERLAYS) and segmentation_id is not None:
        return {"type": network_type, "id": int(segmentation_id)}
    if network_type == "flat":
        return {"type": "vlan", "id": 0}
    raise NeutronLookupError(
        f"{what} is a {network_type or 'unknown'} network: xdsr's LB nodes reach members only on VLAN, flat, "
        "VXLAN or Geneve networks (they rewrite the MAC and VLAN, or the VNI and tunnel endpoint, of a frame)"
    )


@dataclass
class Neutron:
    conn: Any  # openstack.connection.Connection (or a stand-in with the same network proxy)
    cache_seconds: float = 300.0
    # Hosts whose endpoint Neutron's agents API does not report (OVN chassis): host → address.
    tunnel_endpoints: Mapping[str, str] = field(default_factory=dict)
    _cache: dict[tuple[str, ...], tuple[float, Any]] = field(default_factory=dict)

    def _cached(self, key: tuple[str, ...], compute: Any) -> Any:
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        value = compute()
        self._cache[key] = (now, value)
        return value

    def subnet_segment(self, subnet_id: str) -> Segment:
        def compute() -> Segment:
            net = self.conn.network
            subnet = net.get_subnet(subnet_id)
            if getattr(subnet, "segment_id", None):
                seg = net.get_segment(subnet.segment_id)
                return _segment(seg.network_type, seg.segmentation_id, f"subnet {subnet_id}")
            return self.network_segment(subnet.network_id)

        return self._cached(("subnet", subnet_id), compute)  # type: ignore[no-any-return]

    def network_segment(self, network_id: str) -> Segment:
        def compute() -> Segment:
            network = self.conn.network.get_network(network_id)
            return _segment(
                getattr(network, "provider_network_type", None),
                getattr(network, "provider_segmentation_id", None),
                f"network {network_id}",
            )

        return self._cached(("network", network_id), compute)  # type: ignore[no-any-return]

    def vip_segment(self, subnet_id: str | None, network_id: str | None) -> Segment | None:
        if subnet_id:
            return self.subnet_segment(subnet_id)
        if network_id:
            return self.network_segment(network_id)
        return None

    def host_endpoint(self, host: str) -> str:
        """The tunnel endpoint of a hypervisor: what its L2 agent reports
        (`configurations.tunneling_ip`), else `tunnel_endpoints`."""

        def compute() -> str:
            for agent in self.conn.network.agents(host=host):
                ip = (getattr(agent, "configuration", None) or {}).get("tunneling_ip")
                if ip:
                    return str(ip)
            if host in self.tunnel_endpoints:
                return self.tunnel_endpoints[host]
            raise NeutronLookupError(
                f"host {host} has no tunnel endpoint: no Neutron agent on it reports configurations.tunneling_ip "
                "(OVN's do not); give it in [xdsr] tunnel_endpoints"
            )

        return self._cached(("host", host), compute)  # type: ignore[no-any-return]

    def member(self, address: str, subnet_id: str | None) -> dict[str, Any]:
        """What Neutron knows of a member, as xdsr's member attributes: its
        port's `mac_address`, its `segment` and, on an overlay, the
        `vtep_address` of the host the port is bound to."""

        def compute() -> dict[str, Any]:
            filters = [f"ip_address={address}"] + ([f"subnet_id={subnet_id}"] if subnet_id else [])
            ports = list(self.conn.network.ports(fixed_ips=filters))
            if not ports:
                where = f" on subnet {subnet_id}" if subnet_id else ""
                raise NeutronLookupError(f"no Neutron port has address {address}{where}")
            if len(ports) > 1 and not subnet_id:
                raise NeutronLookupError(f"{len(ports)} Neutron ports have address {address}: give the subnet_id")
            port = ports[0]
            sub = subnet_id or next(
                (ip.get("subnet_id") for ip in port.fixed_ips or [] if ip.get("ip_address") == address), None
            )
            segment = self.subnet_segment(sub) if sub else self.network_segment(port.network_id)
            found: dict[str, Any] = {"mac_address": str(port.mac_address), "segment": segment}
            if segment["type"] in OVERLAYS:
                host = getattr(port, "binding_host_id", None)
                if not host:
                    raise NeutronLookupError(
                        f"the Neutron port of {address} is bound to no host (binding:host_id), so its tunnel "
                        "endpoint is unknown"
                    )
                found["vtep_address"] = self.host_endpoint(host)
            return found

        return self._cached(("member", address, subnet_id or ""), compute)  # type: ignore[no-any-return]


def connect(conf: Any) -> Any:
    """An openstacksdk connection for the lookups: a clouds.yaml cloud if
    [xdsr] neutron_cloud names one, else Octavia's own [service_auth]
    credentials (those it uses to talk to Neutron)."""
    import openstack

    group = conf.xdsr
    if group.neutron_cloud:
        return openstack.connect(cloud=group.neutron_cloud)
    from keystoneauth1 import loading as ks_loading

    auth = ks_loading.load_auth_from_conf_options(conf, "service_auth")
    session = ks_loading.load_session_from_conf_options(conf, "service_auth", auth=auth)
    neutron = getattr(conf, "neutron", None)
    kwargs: dict[str, Any] = {"session": session}
    if neutron is not None:
        if getattr(neutron, "region_name", None):
            kwargs["region_name"] = neutron.region_name
        endpoint = getattr(neutron, "endpoint_override", None) or getattr(neutron, "endpoint", None)
        if endpoint:
            kwargs["network_endpoint_override"] = endpoint
    return openstack.connection.Connection(**kwargs)


def enabled(conf: Any) -> bool:
    mode = conf.xdsr.neutron
    if mode == "auto":
        return str(conf.controller_worker.network_driver) != "network_noop_driver"
    return bool(mode == "true")
