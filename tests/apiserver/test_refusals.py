"""What L2DSR cannot do is refused with a 4xx that names the field and says
why; invalid input likewise; and a refused request changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.apiserver.helpers import (
    TOKEN_A,
    ServerThread,
    create_lb,
    create_listener,
    create_member,
    create_pool,
    stored,
    vip,
)

LB = "/v2/lbaas/loadbalancers"
LISTENERS = "/v2/lbaas/listeners"
POOLS = "/v2/lbaas/pools"
HMS = "/v2/lbaas/healthmonitors"


@dataclass
class World:
    lb: str
    listener: str  # TCP 80, default pool `pool`
    pool: str  # TCP, a member on port 80, a health monitor
    member: str
    spare: str  # TCP, unattached, a member on port 8080
    udp: str  # UDP, unattached
    vip: str


@pytest.fixture(scope="module")
def world(api: ServerThread) -> Iterator[World]:
    with httpx.Client(base_url=api.url, headers={"X-Auth-Token": TOKEN_A}) as c:
        lb = create_lb(c)
        li = create_listener(c, lb["id"], 80)
        pool = create_pool(c, listener_id=li["id"])
        member = create_member(c, pool["id"], "192.0.2.51", 80)
        r = c.post(
            HMS,
            json={"healthmonitor": {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3}},
        )
        assert r.status_code == 201
        spare = create_pool(c, loadbalancer_id=lb["id"])
        create_member(c, spare["id"], "192.0.2.52", 8080)
        udp = create_pool(c, "UDP", loadbalancer_id=lb["id"])
        yield World(lb["id"], li["id"], pool["id"], member["id"], spare["id"], udp["id"], lb["vip_address"])


def listener(w: World, **attrs: Any) -> dict[str, Any]:
    return {"listener": {"loadbalancer_id": w.lb, "protocol": "TCP", "protocol_port": 8443, **attrs}}


def pool(w: World, **attrs: Any) -> dict[str, Any]:
    return {"pool": {"loadbalancer_id": w.lb, "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN", **attrs}}


def member(**attrs: Any) -> dict[str, Any]:
    return {"member": {"address": "192.0.2.99", "protocol_port": 80, **attrs}}


def hm(**attrs: Any) -> dict[str, Any]:
    return {"healthmonitor": {"type": "TCP", "delay": 5, "timeout": 3, "max_retries": 3, **attrs}}


def lbody(**attrs: Any) -> dict[str, Any]:
    return {"loadbalancer": {"vip_address": vip(), **attrs}}


VERBOSE = False

# (what, method, path, body, status, the field the message starts with, words it must contain)
Case = tuple[str, str, str, Any, int, str, str]


def cases(w: World) -> list[Case]:
    members = f"{POOLS}/{w.pool}/members"
    return [
        # --- what L2DSR cannot do, and why ---
        ("HTTP listener", "POST", LISTENERS, listener(w, protocol="HTTP"), 400, "listener.protocol", "only TCP"),
        ("HTTPS listener", "POST", LISTENERS, listener(w, protocol="HTTPS"), 400, "listener.protocol", "TCP listener"),
        ("terminated", "POST", LISTENERS, listener(w, protocol="TERMINATED_HTTPS"), 400, "listener.protocol", "TLS"),
        ("SCTP listener", "POST", LISTENERS, listener(w, protocol="SCTP"), 400, "listener.protocol", "TCP and UDP"),
        ("PROMETHEUS", "POST", LISTENERS, listener(w, protocol="PROMETHEUS"), 400, "listener.protocol", "TCP and UDP"),
        ("unknown protocol", "POST", LISTENERS, listener(w, protocol="QUIC"), 400, "listener.protocol", "TCP, UDP"),
        ("PROXY pool", "POST", POOLS, pool(w, protocol="PROXY"), 400, "pool.protocol", "PROXY protocol header"),
        ("PROXYV2 pool", "POST", POOLS, pool(w, protocol="PROXYV2"), 400, "pool.protocol", "PROXY protocol header"),
        ("HTTP pool", "POST", POOLS, pool(w, protocol="HTTP"), 400, "pool.protocol", "terminating connections"),
        ("TLS cert", "POST", LISTENERS, listener(w, default_tls_container_ref="x"), 400,
         "listener.default_tls_container_ref", "TLS is not supported"),
        ("SNI", "POST", LISTENERS, listener(w, sni_container_refs=["x"]), 400, "listener.sni_container_refs", "TLS"),
        ("ciphers", "POST", LISTENERS, listener(w, tls_ciphers="ECDHE"), 400, "listener.tls_ciphers", "TLS"),
        ("TLS versions", "PUT", f"{LISTENERS}/{w.listener}", {"listener": {"tls_versions": ["TLSv1.3"]}}, 400,
         "listener.tls_versions", "TLS"),
        ("ALPN", "POST", LISTENERS, listener(w, alpn_protocols=["h2"]), 400, "listener.alpn_protocols", "TLS"),
        ("client auth", "POST", LISTENERS, listener(w, client_authentication="MANDATORY"), 400,
         "listener.client_authentication", "TLS"),
        ("client CA", "POST", LISTENERS, listener(w, client_ca_tls_container_ref="x"), 400,
         "listener.client_ca_tls_container_ref", "TLS"),
        ("HSTS", "POST", LISTENERS, listener(w, hsts_max_age=10), 400, "listener.hsts_max_age", "HTTP responses"),
        ("pool TLS", "POST", POOLS, pool(w, tls_enabled=True), 400, "pool.tls_enabled", "TLS"),
        ("pool cert", "PUT", f"{POOLS}/{w.pool}", {"pool": {"tls_container_ref": "x"}}, 400, "pool.tls_container_ref",
         "TLS"),
        ("L7 policies", "POST", "/v2/lbaas/l7policies", {"l7policy": {"listener_id": w.listener}}, 400, "l7policies",
         "L7 policies are not supported"),
        ("L7 rules", "GET", "/v2/lbaas/l7policies/x/rules", None, 400, "l7policies", "cannot route on their content"),
        ("inline L7", "POST", LISTENERS, listener(w, l7policies=[{"action": "REJECT"}]), 400, "listener.l7policies",
         "L7"),
        ("insert headers", "POST", LISTENERS, listener(w, insert_headers={"X-Forwarded-For": "true"}), 400,
         "listener.insert_headers", "never touches HTTP headers"),
        ("member port", "POST", members, member(protocol_port=8080), 400, "member.protocol_port",
         "does not translate ports"),
        ("listener port", "POST", LISTENERS, listener(w, default_pool_id=w.spare), 400, "listener.default_pool_id",
         "does not translate ports"),
        ("attach later", "PUT", f"{LISTENERS}/{w.listener}", {"listener": {"default_pool_id": w.spare}}, 400,
         "listener.default_pool_id", "does not translate ports"),
        ("batch port", "PUT", members, {"members": [{"address": "192.0.2.9", "protocol_port": 81}]}, 400,
         "members[0].protocol_port", "does not translate ports"),
        ("connection limit", "POST", LISTENERS, listener(w, connection_limit=100), 400, "listener.connection_limit",
         "no per-connection state"),
        ("limit update", "PUT", f"{LISTENERS}/{w.listener}", {"listener": {"connection_limit": 5}}, 400,
         "listener.connection_limit", "only -1"),
        ("persistence", "POST", POOLS, pool(w, session_persistence={"type": "SOURCE_IP"}), 400,
         "pool.session_persistence", "stateless hash of its 5-tuple"),
        ("cookies", "PUT", f"{POOLS}/{w.pool}", {"pool": {"session_persistence": {"type": "HTTP_COOKIE"}}}, 400,
         "pool.session_persistence", "cookies"),
        ("least conns", "POST", POOLS, pool(w, lb_algorithm="LEAST_CONNECTIONS"), 400, "pool.lb_algorithm",
         "Maglev over the 5-tuple hash"),
        ("source IP", "PUT", f"{POOLS}/{w.pool}", {"pool": {"lb_algorithm": "SOURCE_IP"}}, 400, "pool.lb_algorithm",
         "Maglev over the 5-tuple hash"),
        ("backup", "POST", members, member(backup=True), 400, "member.backup", "backup members are not supported"),
        ("backup update", "PUT", f"{members}/{w.member}", {"member": {"backup": True}}, 400, "member.backup",
         "weight 0"),
        ("allowed CIDRs", "POST", LISTENERS, listener(w, allowed_cidrs=["10.0.0.0/8"]), 400, "listener.allowed_cidrs",
         "security groups"),
        ("UDP pool on TCP", "PUT", f"{LISTENERS}/{w.listener}", {"listener": {"default_pool_id": w.udp}}, 400,
         "listener.default_pool_id", "must speak the listener's protocol"),
        ("pool for listener", "POST", LISTENERS, listener(w, protocol="UDP", default_pool_id=w.spare), 400,
         "listener.default_pool_id", "must speak the listener's protocol"),
        ("no VIP", "POST", LB, {"loadbalancer": {"vip_subnet_id": "5f4c5a4e-4a0b-4c40-9f3b-57b1d1d2b8a1"}}, 400,
         "loadbalancer.vip_address", "xdsr allocates no addresses"),
        ("flavor", "POST", LB, lbody(flavor_id="5f4c5a4e-4a0b-4c40-9f3b-57b1d1d2b8a1"), 400, "loadbalancer.flavor_id",
         "flavors"),
        ("provider", "POST", LB, lbody(provider="amphora"), 400, "loadbalancer.provider", "xdsr"),
        ("more VIPs", "POST", LB, lbody(additional_vips=[{"subnet_id": "x"}]), 400, "loadbalancer.additional_vips",
         "one VIP"),
        ("VIP SGs", "POST", LB, lbody(vip_sg_ids=["x"]), 400, "loadbalancer.vip_sg_ids", "security groups"),
        ("HM HTTP version", "POST", HMS, hm(pool_id=w.spare, type="HTTP", http_version=1.1), 400,
         "healthmonitor.http_version", "not supported"),
        # --- invalid input ---
        ("port 0", "POST", LISTENERS, listener(w, protocol_port=0), 400, "listener.protocol_port", "greater than"),
        ("port too big", "POST", LISTENERS, listener(w, protocol_port=70000), 400, "listener.protocol_port", "less"),
        ("bad address", "POST", members, member(address="not-an-ip"), 400, "member.address", "IP"),
        ("bad MAC", "POST", members, member(mac_address="zz:00"), 400, "member.mac_address", "invalid MAC"),
        ("multicast MAC", "POST", members, member(mac_address="01:00:5e:00:00:01"), 400, "member.mac_address",
         "multicast"),
        ("VLAN 5000", "POST", members, member(segment={"type": "vlan", "id": 5000}), 400, "member.segment.id", "4094"),
        ("VXLAN member, VLAN VIP", "POST", members, member(segment={"type": "vxlan", "id": 5}), 400,
         "member.segment", "adds, strips or converts no encapsulation"),
        ("VNI 0", "POST", members, member(segment={"type": "vxlan", "id": 0}), 400, "member.segment.id", "VNI 0"),
        ("VTEP on a VLAN", "POST", members, member(vtep_address="198.51.100.7"), 400, "member.vtep_address",
         "this member is on a VLAN"),
        ("VTEP multicast", "POST", members, member(segment={"type": "vxlan", "id": 5}, vtep_address="239.1.1.1"),
         400, "member.vtep_address", "tunnel endpoint"),
        ("weight", "POST", members, member(weight=300), 400, "member.weight", "256"),
        ("null weight", "PUT", f"{members}/{w.member}", {"member": {"weight": None}}, 400, "member.weight",
         "may not be null"),
        ("VIP 0.0.0.0", "POST", LB, lbody(vip_address="0.0.0.0"), 400, "loadbalancer.vip_address", "unicast"),
        ("VIP multicast", "POST", LB, lbody(vip_address="ff02::1"), 400, "loadbalancer.vip_address", "unicast"),
        ("VIP loopback", "POST", LB, lbody(vip_address="127.0.0.1"), 400, "loadbalancer.vip_address", "unicast"),
        ("VIP broadcast", "POST", LB, lbody(vip_address="255.255.255.255"), 400, "loadbalancer.vip_address",
         "unicast"),
        ("VIP mapped", "POST", LB, lbody(vip_address="::ffff:10.2.0.9"), 400, "loadbalancer.vip_address",
         "IPv4-mapped"),
        ("VIP number", "POST", LB, lbody(vip_address=5), 400, "loadbalancer.vip_address", "written as a string"),
        # The agent's check on a member's address (xdsr.model.checks), made at the API.
        *[(f"member {a}", "POST", members, member(address=a), 400, "member.address", "unicast")
          for a in ("224.0.0.1", "0.0.0.0", "255.255.255.255", "127.0.0.1", "::1")],
        ("member mapped", "POST", members, member(address="::ffff:10.2.0.9"), 400, "member.address", "IPv4-mapped"),
        ("member number", "POST", members, member(address=5), 400, "member.address", "written as a string"),
        ("batch loopback", "PUT", members, {"members": [{"address": "127.0.0.1", "protocol_port": 80}]}, 400,
         "members[0].address", "unicast"),
        ("monitor loopback", "POST", members, member(monitor_address="127.0.0.1"), 400, "member.monitor_address",
         "unicast"),
        ("monitor update", "PUT", f"{members}/{w.member}", {"member": {"monitor_address": "::1"}}, 400,
         "member.monitor_address", "unicast"),
        ("monitor number", "PUT", f"{members}/{w.member}", {"member": {"monitor_address": 5}}, 400,
         "member.monitor_address", "written as a string"),
        ("table size", "POST", POOLS, pool(w, table_size=100), 400, "pool.table_size", "not prime"),
        ("unknown attribute", "POST", LB, lbody(colour="red"), 400, "loadbalancer.colour", "unknown attribute"),
        ("no wrapper", "POST", LB, {"vip_address": "10.0.0.1"}, 400, "loadbalancer", "required attribute"),
        ("long name", "PUT", f"{LB}/{w.lb}", {"loadbalancer": {"name": "x" * 256}}, 400, "loadbalancer.name", "255"),
        ("vip immutable", "PUT", f"{LB}/{w.lb}", {"loadbalancer": {"vip_address": "10.0.0.9"}}, 400,
         "loadbalancer.vip_address", "unknown attribute"),
        ("bad pool id", "POST", HMS, hm(pool_id="nope"), 400, "healthmonitor.pool_id", "UUID"),
        ("no parent", "POST", POOLS, {"pool": {"protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"}}, 400,
         "pool.loadbalancer_id", "loadbalancer_id or listener_id"),
        ("HM timeout", "POST", HMS, hm(pool_id=w.spare, delay=2, timeout=5), 400, "healthmonitor.timeout", "delay"),
        ("UDP-CONNECT", "POST", HMS, hm(pool_id=w.spare, type="UDP-CONNECT"), 400, "healthmonitor.type", "UDP pools"),
        ("HTTPS on UDP", "POST", HMS, hm(pool_id=w.udp, type="HTTPS"), 400, "healthmonitor.type", "UDP"),
        ("method on TCP", "POST", HMS, hm(pool_id=w.spare, http_method="GET"), 400, "healthmonitor.http_method",
         "HTTP and HTTPS"),
        ("bad codes", "POST", HMS, hm(pool_id=w.spare, type="HTTP", expected_codes="2xx"), 400,
         "healthmonitor.expected_codes", "pattern"),
        ("cascade", "DELETE", f"{LB}/{w.lb}?cascade=perhaps", None, 400, "cascade", "boolean"),
        ("not JSON", "POST", LB, b"{nope", 400, "body", "invalid JSON"),
        # --- conflicts with the current state ---
        ("same port", "POST", LISTENERS, listener(w, protocol_port=80), 409, "listener.protocol_port",
         "already serves TCP port 80"),
        ("second monitor", "POST", HMS, hm(pool_id=w.pool), 409, "healthmonitor.pool_id", "already has health monitor"),
        ("pool taken", "POST", LISTENERS, listener(w, default_pool_id=w.pool), 409, "listener.default_pool_id",
         "already the default pool"),
        ("listener taken", "POST", POOLS, {"pool": {"listener_id": w.listener, "protocol": "TCP", "lb_algorithm":
         "ROUND_ROBIN"}}, 409, "pool.listener_id", "already has default pool"),
        ("same member", "POST", members, member(address="192.0.2.51"), 409, "member", "already is 192.0.2.51"),
        ("same VIP", "POST", LB, {"loadbalancer": {"vip_address": w.vip}}, 409, "loadbalancer.vip_address",
         "already the VIP"),
        ("has children", "DELETE", f"{LB}/{w.lb}", None, 409, "load balancer", "cascade=true"),
        ("another project", "POST", LB, lbody(project_id="project-b"), 403, "loadbalancer.project_id", "admin"),
        ("child project", "POST", LISTENERS, listener(w, project_id="project-b"), 400, "listener.project_id",
         "load balancer's project"),
    ]  # fmt: skip


def test_refusals_name_the_field_say_why_and_change_nothing(api: ServerThread, a: httpx.Client, world: World) -> None:
    before = stored(api.endpoint, world.lb)
    count = len(a.get(LB).json()["loadbalancers"])
    failures = []
    for what, method, path, body, status, field, words in cases(world):
        if isinstance(body, bytes):
            r = a.request(method, path, content=body, headers={"Content-Type": "application/json"})
        else:
            r = a.request(method, path, json=body)
        text = r.json().get("faultstring", "") if r.headers.get("content-type") == "application/json" else r.text
        if r.status_code != status or not text.startswith(field) or words not in text:
            failures.append(f"{what}: {method} {path} -> {r.status_code} {text}")
        elif VERBOSE:
            print(f"{what}: {r.status_code} {text}")
    assert not failures, "\n".join(failures)
    assert stored(api.endpoint, world.lb) == before, "a refused request changed the document"
    assert len(a.get(LB).json()["loadbalancers"]) == count, "a refused request created a load balancer"


def test_accepted_neutral_values(a: httpx.Client, world: World) -> None:
    """The values Octavia clients send by default are accepted: empty TLS
    fields, connection_limit -1, client_authentication NONE, provider xdsr."""
    r = a.post(
        LISTENERS,
        json=listener(
            world,
            protocol_port=9000,
            connection_limit=-1,
            client_authentication="NONE",
            sni_container_refs=[],
            insert_headers={},
            allowed_cidrs=None,
            default_tls_container_ref=None,
            l7policies=[],
        ),
    )
    assert r.status_code == 201, r.text
    r = a.post(LB, json=lbody(provider="xdsr", flavor_id=None, additional_vips=[]))
    assert r.status_code == 201, r.text
    # The same VIP on another segment is another service.
    r = a.post(LB, json={"loadbalancer": {"vip_address": world.vip, "vip_segment": {"type": "vlan", "id": 7}}})
    assert r.status_code == 201, r.text
    # The document is refused when it would exceed what etcd takes in one write.
    r = a.put(f"{LB}/{world.lb}", json={"loadbalancer": {"tags": [f"{i:0>250}" for i in range(5000)]}})
    assert r.status_code == 413, r.text
