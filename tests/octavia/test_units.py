"""The driver's pure parts, without Octavia or root: what is refused and why,
Octavia objects → xdsr bodies, the spool, the status payloads, Neutron
lookups against a stand-in; and that the driver loads without the API
server's web stack."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from xdsr.api import schemas as s
from xdsr.octavia import mapping, spool, validate
from xdsr.octavia.changes import COMMITTED_FIELDS, deleting, split_op, tree_ids
from xdsr.octavia.neutron import Neutron, NeutronLookupError
from xdsr.octavia.report import failure_payload, status_payload


def uid() -> str:
    return str(uuid.uuid4())


def tree() -> dict[str, Any]:
    """An Octavia load balancer as DriverLibrary.get_loadbalancer gives it (as a dict)."""
    lb, li, pool, m1, m2, hm = (uid() for _ in range(6))
    members = [
        {"member_id": m, "pool_id": pool, "address": f"10.1.0.{i}", "protocol_port": 80, "weight": 1}
        for i, m in ((11, m1), (12, m2))
    ]
    p = {
        "pool_id": pool,
        "loadbalancer_id": lb,
        "listener_id": li,
        "protocol": "TCP",
        "lb_algorithm": "ROUND_ROBIN",
        "name": None,
        "members": members,
        "healthmonitor": {
            "healthmonitor_id": hm,
            "pool_id": pool,
            "type": "TCP",
            "delay": 5,
            "timeout": 3,
            "max_retries": 3,
        },
    }
    return {
        "loadbalancer_id": lb,
        "project_id": "p",
        "name": "web",
        "vip_address": "203.0.113.10",
        "vip_subnet_id": uid(),
        "admin_state_up": True,
        "listeners": [
            {
                "listener_id": li,
                "loadbalancer_id": lb,
                "protocol": "TCP",
                "protocol_port": 80,
                "default_pool_id": pool,
                "connection_limit": -1,
                "timeout_client_data": 50000,
                "tls_versions": ["TLSv1.2"],  # Octavia's defaults, on every listener
                "tls_ciphers": "ECDHE",
                "insert_headers": {},
                "client_authentication": "NONE",
            }
        ],
        "pools": [p],
    }


# --- refusals ---


def test_a_plain_tcp_tree_passes() -> None:
    validate.loadbalancer(tree())


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"protocol": "HTTP"}, "listener.protocol", "HTTP is not supported"),
        ({"protocol": "TERMINATED_HTTPS"}, "listener.protocol", "TLS must end on the members"),
        ({"protocol": "SCTP"}, "listener.protocol", "SCTP is not supported"),
        ({"default_tls_container_ref": "ref"}, "listener.default_tls_container_ref", "TLS is not supported"),
        ({"l7policies": [{"l7policy_id": "x"}]}, "listener.l7policies", "L7 policies are not supported"),
        ({"insert_headers": {"X-Forwarded-For": "true"}}, "listener.insert_headers", "unchanged"),
        ({"allowed_cidrs": ["10.0.0.0/8"]}, "listener.allowed_cidrs", "do not filter"),
        ({"connection_limit": 100}, "listener.connection_limit", "cannot count connections"),
        ({"client_authentication": "MANDATORY"}, "listener.client_authentication", "TLS"),
    ],
)
def test_listener_refusals(change: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(validate.Refused) as err:
        validate.listener({**tree()["listeners"][0], **change})
    assert str(err.value).startswith(where + ":") and words in str(err.value)


def test_a_listeners_inline_default_pool_is_judged() -> None:
    lb = tree()
    li = {**lb["listeners"][0], "default_pool": {**lb["pools"][0], "lb_algorithm": "LEAST_CONNECTIONS"}}
    with pytest.raises(validate.Refused, match=r"^listener\.default_pool\.lb_algorithm: LEAST_CONNECTIONS"):
        validate.listener(li)
    lb["listeners"][0]["default_pool"] = {**lb["pools"][0], "pool_id": uid(), "protocol": "UDP"}
    with pytest.raises(validate.Refused, match=r"^loadbalancer\.listeners\[0\]\.default_pool\.protocol"):
        validate.loadbalancer(lb)


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"lb_algorithm": "LEAST_CONNECTIONS"}, "pool.lb_algorithm", "no per-connection state"),
        ({"lb_algorithm": "SOURCE_IP"}, "pool.lb_algorithm", "5-tuple"),
        ({"protocol": "PROXY"}, "pool.protocol", "PROXY protocol header"),
        ({"session_persistence": {"type": "HTTP_COOKIE"}}, "pool.session_persistence", "stateless hash"),
        ({"tls_enabled": True}, "pool.tls_enabled", "TLS is not supported"),
    ],
)
def test_pool_refusals(change: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(validate.Refused) as err:
        validate.pool({**tree()["pools"][0], **change})
    assert str(err.value).startswith(where + ":") and words in str(err.value)


def test_member_and_monitor_refusals() -> None:
    with pytest.raises(validate.Refused, match="backup members are not supported"):
        validate.member({"address": "10.1.0.1", "protocol_port": 80, "backup": True})
    with pytest.raises(validate.Refused, match="does not translate ports"):
        validate.member_port({"protocol_port": 8080}, 80)
    validate.member_port({"protocol_port": 8080}, None)  # a pool no listener uses: anything goes
    with pytest.raises(validate.Refused, match="differs from the listener's protocol_port 80"):
        lb = tree()
        lb["pools"][0]["members"][0]["protocol_port"] = 81
        validate.loadbalancer(lb)
    probe = {"delay": 5, "timeout": 1, "max_retries": 3}
    with pytest.raises(validate.Refused, match="exceeds delay"):
        validate.healthmonitor({**probe, "type": "TCP", "delay": 1, "timeout": 5})
    with pytest.raises(validate.Refused, match="the pool is UDP"):
        validate.healthmonitor({**probe, "type": "HTTPS"}, pool_protocol="UDP")
    with pytest.raises(validate.Refused, match="http_version and domain_name"):
        validate.healthmonitor({**probe, "type": "HTTP", "http_version": 1.1})
    with pytest.raises(validate.Refused, match="SCTP health monitors are not supported"):
        validate.healthmonitor({**probe, "type": "SCTP"})
    with pytest.raises(validate.Refused, match=r"^member\.vnic_type: unknown attribute"):
        validate.member({"address": "10.1.0.1", "protocol_port": 80, "vnic_type": "direct"})


def test_loadbalancer_refusals() -> None:
    with pytest.raises(validate.Refused, match="additional VIPs"):
        validate.loadbalancer({**tree(), "additional_vips": [{"ip_address": "203.0.113.11"}]})
    with pytest.raises(validate.Refused, match="vip_address is required"):
        validate.loadbalancer({**tree(), "vip_address": None})
    with pytest.raises(validate.Refused, match="VIP security groups"):
        validate.loadbalancer({**tree(), "vip_sg_ids": [uid()]})


def test_flavor_and_zone_metadata() -> None:
    assert validate.flavor_metadata({"lbn_group": "edge-1"}) == "edge-1"
    assert validate.flavor_metadata({}) is None
    with pytest.raises(validate.Refused, match="knows only: lbn_group"):
        validate.flavor_metadata({"loadbalancer_topology": "ACTIVE_STANDBY"})
    with pytest.raises(validate.Refused, match="not an xdsr LB node group name"):
        validate.flavor_metadata({"lbn_group": "Edge_1"})
    with pytest.raises(validate.Refused, match="not an xdsr LB node group name"):
        validate.az_metadata({"lbn_group": "-edge"})
    lb = {**tree(), "flavor": {"lbn_group": "a"}, "availability_zone": {"lbn_group": "b"}}
    with pytest.raises(validate.Refused, match="availability zone is group 'b'"):
        validate.lbn_group(lb)
    assert validate.lbn_group({**lb, "availability_zone": "zone-name"}) == "a"
    assert validate.lbn_group({**lb, "flavor": {}}) == "b"


# --- mapping ---


def test_fully_populated_body_keeps_octavia_ids() -> None:
    lb = tree()
    extra = {"10.1.0.11": {"mac_address": "02:00:00:00:00:11", "segment": {"type": "vlan", "id": 100}}}
    body = mapping.loadbalancer(
        lb,
        lbn_group="g1",
        vip_segment={"type": "vlan", "id": 10},
        member_extra=lambda m: extra.get(m["address"], {}),
    )
    assert body["id"] == lb["loadbalancer_id"] and body["lbn_group"] == "g1"
    assert body["vip_segment"] == {"type": "vlan", "id": 10}
    (li,) = body["listeners"]
    (pool,) = body["pools"]
    assert li["id"] == lb["listeners"][0]["listener_id"] and li["default_pool_id"] == pool["id"]
    assert "tls_versions" not in li and "tls_ciphers" not in li  # Octavia's defaults ask for nothing
    assert li["connection_limit"] == -1 and li["insert_headers"] == {}  # carried: the schema judges them
    assert "loadbalancer_id" not in li and "pool_id" not in pool["members"][0]  # parents: nesting says it
    m11, m12 = pool["members"]
    assert m11["mac_address"] == "02:00:00:00:00:11" and m11["segment"] == {"type": "vlan", "id": 100}
    assert "mac_address" not in m12 and "segment" not in m12  # resolved by the LB nodes
    assert pool["healthmonitor"]["id"] == lb["pools"][0]["healthmonitor"]["healthmonitor_id"]
    assert "http_method" not in pool["healthmonitor"]  # not on a TCP monitor
    s.LoadBalancerCreate.model_validate(body)  # what the agent sends is a valid xdsr create
    # Objects being deleted stay out; a listener loses a default pool that is.
    skipped = mapping.loadbalancer(lb, skip=frozenset({lb["pools"][0]["pool_id"]}))
    assert not skipped["pools"] and "default_pool_id" not in skipped["listeners"][0]


def test_mapping_is_strict() -> None:
    """Every attribute of Octavia's provider objects is either an attribute of
    the xdsr schema (carried, judged by it) or named as not the object's own
    or as Octavia's default: none is dropped silently."""
    dm = pytest.importorskip("octavia_lib.api.drivers.data_models")
    import inspect

    kinds = {
        "loadbalancer": (dm.LoadBalancer, s.LoadBalancerCreate),
        "listener": (dm.Listener, s.ListenerInline),
        "pool": (dm.Pool, s.PoolInline),
        "member": (dm.Member, s.MemberInline),
        "healthmonitor": (dm.HealthMonitor, s.HealthMonitorInline),
    }
    for kind, (octavia, schema) in kinds.items():
        attrs = set(inspect.signature(octavia.__init__).parameters) - {"self"}
        left = attrs - {mapping.ID_KEY[kind]} - mapping.NOT_OWN[kind] - mapping.OCTAVIA_DEFAULTS.get(kind, frozenset())
        # vnic_type is carried too (the schema refuses all but Octavia's default "normal", as unknown).
        assert left - set(schema.model_fields) <= {"vnic_type"}, (kind, left - set(schema.model_fields))
    # A refused attribute reaches the schema: the API server's words.
    with pytest.raises(validate.Refused, match=r"^loadbalancer\.pools\[0\]\.tls_enabled: TLS is not supported"):
        lb = tree()
        lb["pools"][0]["tls_enabled"] = True
        validate.loadbalancer(lb)
    # An attribute xdsr does not know (a newer Octavia's) is refused, not dropped.
    with pytest.raises(validate.Refused, match=r"^listener\.quic: unknown attribute"):
        validate.listener({**tree()["listeners"][0], "quic": True})


def test_committed_fields_are_what_an_update_may_change() -> None:
    # Derived from the schemas; they hold what the agent compared before they were.
    assert {"name", "admin_state_up", "weight", "monitor_address", "monitor_port"} <= set(COMMITTED_FIELDS["member"])
    assert {"default_pool_id", "timeout_client_data", "timeout_tcp_inspect"} <= set(COMMITTED_FIELDS["listener"])
    assert {"delay", "max_retries_down", "url_path", "expected_codes"} <= set(COMMITTED_FIELDS["health_monitor"])
    assert {"lb_algorithm", "description"} <= set(COMMITTED_FIELDS["pool"])
    assert {"vip_qos_policy_id"} <= set(COMMITTED_FIELDS["loadbalancer"])
    assert "address" not in COMMITTED_FIELDS["member"] and "protocol" not in COMMITTED_FIELDS["listener"]


def test_the_driver_loads_without_the_web_stack() -> None:
    """Octavia's API process imports the driver: it must not pull in the xdsr
    API server, FastAPI, uvicorn, starlette or numpy."""
    code = (
        "import sys, json\n"
        "import xdsr.octavia.driver, xdsr.octavia.validate, xdsr.octavia.agent\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    heavy = {"fastapi", "uvicorn", "starlette", "numpy"}
    assert not loaded & heavy, sorted(loaded & heavy)
    assert not any(m.startswith("xdsr.apiserver") for m in loaded), sorted(m for m in loaded if "apiserver" in m)


# --- spool ---


def test_spool_round_trip(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    wake = spool.wake_socket(d)
    try:
        first = spool.put(d, {"op": "member_create", "object": {"member_id": "1"}})
        spool.put(d, {"op": "member_delete", "object": {"member_id": "1"}})
        assert wake.recv(8) == b"!"  # the agent is poked
        (d / "0-broken.json").write_text("{not json")
        got = spool.pending(d)
        assert [e.op["op"] for e in got] == ["member_create", "member_delete"]  # queueing order
        assert got[0].path == first and "queued_at" in got[0].op
        assert (d / "0-broken.bad").exists()  # set aside, not retried forever
        spool.done(got[0])
        assert [e.op["op"] for e in spool.pending(d)] == ["member_delete"]
    finally:
        wake.close()
    spool.poke(tmp_path / "nowhere")  # no agent listening: no error


# --- status payloads ---


def test_status_payload_reports_known_objects_and_deletions() -> None:
    lb = tree()
    pool = lb["pools"][0]
    m1, m2 = (m["member_id"] for m in pool["members"])
    op = {"op": "member_delete", "lb_id": lb["loadbalancer_id"], "object": pool["members"][1]}
    gone = deleting(op, lb)
    assert gone == {"members": {m2}}
    st = {
        "id": lb["loadbalancer_id"],
        "provisioning_status": "ACTIVE",
        "operating_status": "ONLINE",
        "listeners": [
            {"id": lb["listeners"][0]["listener_id"], "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}
        ],
        "pools": [{"id": pool["pool_id"], "provisioning_status": "ACTIVE", "operating_status": "ONLINE"}],
        "members": [
            {"id": m1, "provisioning_status": "PENDING_UPDATE", "operating_status": "ONLINE"},
            {"id": "not-octavias", "provisioning_status": "ACTIVE", "operating_status": "ONLINE"},
        ],
        "healthmonitors": [],
    }
    payload = status_payload(st, lb, gone)
    assert payload["members"] == [
        {"id": m1, "provisioning_status": "ERROR", "operating_status": "ONLINE"},  # still pending: did not happen
        {"id": m2, "provisioning_status": "DELETED"},
    ]
    assert payload["loadbalancers"][0]["provisioning_status"] == "ACTIVE"
    assert "healthmonitors" not in payload


def test_failure_payload_unlocks_the_parents() -> None:
    lb = tree()
    lb_id, pool = lb["loadbalancer_id"], lb["pools"][0]
    member = {"member_id": uid(), "pool_id": pool["pool_id"]}
    payload = failure_payload({"op": "member_create", "lb_id": lb_id, "object": member}, lb)
    assert payload["members"] == [{"id": member["member_id"], "provisioning_status": "ERROR"}]
    assert payload["pools"] == [{"id": pool["pool_id"], "provisioning_status": "ACTIVE"}]
    assert payload["listeners"] == [{"id": lb["listeners"][0]["listener_id"], "provisioning_status": "ACTIVE"}]
    assert payload["loadbalancers"] == [{"id": lb_id, "provisioning_status": "ACTIVE"}]
    created = failure_payload({"op": "loadbalancer_create", "lb_id": lb_id, "object": lb}, None)
    assert created["loadbalancers"][0]["provisioning_status"] == "ERROR"
    assert {e["id"] for e in created["members"]} == tree_ids(lb)["members"]
    assert split_op("health_monitor_update") == ("health_monitor", "update")
    assert split_op("member_batch_update") == ("member", "batch_update")
    batch = {"op": "member_batch_update", "lb_id": lb_id, "pool_id": pool["pool_id"], "members": [pool["members"][0]]}
    assert deleting(batch, lb) == {"members": {pool["members"][1]["member_id"]}}


# --- Neutron ---


class FakeNetwork:
    """openstacksdk's network proxy as the lookups use it: ports by fixed IP
    (with their binding), subnets, networks with provider attributes, and
    the agents API (an Open vSwitch agent reporting its tunneling_ip on
    hv1, an OVN controller on hv2, which reports none)."""

    def __init__(self) -> None:
        self.calls = 0
        self.agent_calls = 0

        def port(mac: str, net: str, sub: str, ip: str, host: str | None = None) -> Any:
            fixed = [{"subnet_id": sub, "ip_address": ip}]
            return SimpleNamespace(mac_address=mac, network_id=net, fixed_ips=fixed, binding_host_id=host)

        self.by_ip = {
            "10.1.0.11": port("fa:16:3e:00:00:01", "net-1", "sub-1", "10.1.0.11"),
            "10.3.0.5": port("fa:16:3e:00:00:05", "net-3", "sub-3", "10.3.0.5", "hv1"),
            "10.3.0.6": port("fa:16:3e:00:00:06", "net-3", "sub-3", "10.3.0.6", "hv2"),
            "10.3.0.7": port("fa:16:3e:00:00:07", "net-3", "sub-3", "10.3.0.7", "hv3"),
            "10.4.0.5": port("fa:16:3e:00:00:08", "net-4", "sub-4", "10.4.0.5", "hv1"),
        }
        self.agents_by_host = {
            "hv1": [
                SimpleNamespace(agent_type="DHCP agent", configuration={"dhcp_driver": "x"}, is_alive=True),
                SimpleNamespace(
                    agent_type="Open vSwitch agent",
                    configuration={"tunnel_types": ["vxlan"], "tunneling_ip": "192.0.2.21"},
                    is_alive=True,
                ),
            ],
            "hv2": [
                SimpleNamespace(agent_type="OVN Controller agent", configuration={"chassis_name": "c2"}, is_alive=True)
            ],
        }

    def ports(self, fixed_ips: list[str]) -> list[Any]:
        self.calls += 1
        ip = fixed_ips[0].removeprefix("ip_address=")
        return [self.by_ip[ip]] if ip in self.by_ip else []

    def get_subnet(self, subnet_id: str) -> Any:
        nets = {"sub-1": "net-1", "sub-2": "net-2", "sub-3": "net-3", "sub-4": "net-4", "sub-5": "net-5"}
        return SimpleNamespace(segment_id=None, network_id=nets[subnet_id])

    def get_network(self, network_id: str) -> Any:
        kinds = {
            "net-1": ("vlan", 100),
            "net-2": ("gre", 5000),
            "net-3": ("vxlan", 5003),
            "net-4": ("geneve", 7004),
            "net-5": ("flat", None),
        }
        t, seg = kinds[network_id]
        return SimpleNamespace(provider_network_type=t, provider_segmentation_id=seg)

    def agents(self, host: str) -> list[Any]:
        self.agent_calls += 1
        return self.agents_by_host.get(host, [])


def test_neutron_lookups() -> None:
    net = FakeNetwork()
    n = Neutron(SimpleNamespace(network=net))
    vlan100 = {"mac_address": "fa:16:3e:00:00:01", "segment": {"type": "vlan", "id": 100}}
    assert n.member("10.1.0.11", "sub-1") == vlan100
    assert n.member("10.1.0.11", None) == vlan100
    n.member("10.1.0.11", "sub-1")
    assert net.calls == 2  # the second lookup of the same member came from the cache
    assert n.vip_segment("sub-1", None) == {"type": "vlan", "id": 100}
    assert n.vip_segment(None, "net-5") == {"type": "vlan", "id": 0}  # flat: untagged
    with pytest.raises(NeutronLookupError, match=r"no Neutron port has address 10\.1\.0\.99"):
        n.member("10.1.0.99", "sub-1")
    with pytest.raises(NeutronLookupError, match="gre network"):
        n.subnet_segment("sub-2")


def test_neutron_overlay_members_and_their_hosts_tunnel_endpoints() -> None:
    net = FakeNetwork()
    n = Neutron(SimpleNamespace(network=net), tunnel_endpoints={"hv2": "192.0.2.22"})
    assert n.vip_segment("sub-3", None) == {"type": "vxlan", "id": 5003}
    # Bound to hv1, whose Open vSwitch agent reports its tunneling_ip.
    assert n.member("10.3.0.5", "sub-3") == {
        "mac_address": "fa:16:3e:00:00:05",
        "segment": {"type": "vxlan", "id": 5003},
        "vtep_address": "192.0.2.21",
    }
    assert n.member("10.4.0.5", None)["segment"] == {"type": "geneve", "id": 7004}
    assert n.member("10.4.0.5", None)["vtep_address"] == "192.0.2.21"
    assert net.agent_calls == 1  # one host, asked once
    # hv2 is an OVN chassis: its endpoint comes from tunnel_endpoints.
    assert n.member("10.3.0.6", "sub-3")["vtep_address"] == "192.0.2.22"
    # hv3 is known to nobody, and an unbound port has no host: errors that say so.
    with pytest.raises(NeutronLookupError, match=r"host hv3 has no tunnel endpoint.*tunnel_endpoints"):
        n.member("10.3.0.7", "sub-3")
    net.by_ip["10.3.0.7"].binding_host_id = None
    with pytest.raises(NeutronLookupError, match=r"10\.3\.0\.7 is bound to no host"):
        n.member("10.3.0.7", None)
    # Mapped into the body xdsr validates.
    body = mapping.member(
        {"member_id": "m2", "address": "10.3.0.5", "protocol_port": 80, "subnet_id": "sub-3"},
        lambda m: n.member(m["address"], m["subnet_id"]),
    )
    assert body["vtep_address"] == "192.0.2.21" and body["mac_address"] == "fa:16:3e:00:00:05"
    # The fake's ids are not UUIDs; the rest is what xdsr's schema takes.
    s.MemberInline.model_validate({k: v for k, v in body.items() if k not in ("id", "subnet_id")})


def test_ops_are_json() -> None:
    # What the driver queues must survive JSON (it crosses processes as a file).
    lb = tree()
    assert json.loads(json.dumps({"op": "loadbalancer_create", "object": lb}))["object"] == lb
