"""The BGP configuration, what the agent makes of it for BIRD, and what it
reads back; no root, no namespaces. BIRD itself (`bird -p`) judges every
configuration the agent renders."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from xdsr.agent.bgp import load_config, wanted
from xdsr.agent.bird import Reply, parse_protocols, render_announcements, render_config
from xdsr.agent.vips import HeldVips, held_pairs
from xdsr.dataplane.model import ServiceKey
from xdsr.model.bgp import BgpConfig

BASE: dict[str, Any] = {
    "asn": 65001,
    "peers": [{"name": "rt_a", "address": "10.254.0.1", "asn": 65000, "segments": [10], "next_hop": "10.255.0.11"}],
}


def cfg(**changes: Any) -> BgpConfig:
    return BgpConfig.model_validate({**BASE, **changes})


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"hold_time": 1}, "hold_time", "at least 3 seconds"),
        ({"hold_time": 70000}, "hold_time", "less than or equal to 65535"),
        ({"asn": 0}, "asn", "greater than or equal to 1"),
        ({"asn": 2**32}, "asn", "less than or equal to 4294967294"),
        ({"bfd": {"multiplier": 0}}, "bfd.multiplier", "greater than or equal to 1"),
        ({"bfd": {"interval_ms": 20000}}, "bfd.interval_ms", "less than or equal to 10000"),
        ({"peers": []}, "peers", "at least 1 item"),
        ({"peers": [{"address": "224.0.0.5", "asn": 65000}]}, "peers.0.address", "cannot be a BGP peer"),
        ({"peers": [{"address": "10.0.0.1", "asn": 65000, "next_hop6": "10.0.0.2"}]}, "next_hop6", "not an IPv6"),
        ({"peers": [{"address": "10.0.0.1", "asn": 65000, "segments": [5000]}]}, "segments.0", "4094"),
        ({"peers": [{"address": "10.0.0.1", "asn": 1, "name": "Bad-Name"}]}, "name", "lower-case letter"),
        ({"peers": [{"address": "10.0.0.1", "asn": 1}, {"address": "10.0.0.1", "asn": 2}]}, "peers", "unique"),
        ({"peers": [{"address": "fd00::1", "asn": 1}]}, "router_id", "required when no peer"),
        ({"vips": {"10.0.0.1": {"med": -1}}}, "med", "greater than or equal to 0"),
        ({"vips": {"0.0.0.0": {}}}, "vips", "cannot be a VIP"),
        ({"default_policy": {"communities": ["65000"]}}, "communities", "ASN:VALUE"),
        ({"default_policy": {"communities": ["1:2:4294967296"]}}, "communities", "32 bits"),
        ({"peers": [{"address": "10.0.0.1", "asn": 65001}]}, "peers", "give its `source` address"),
        ({"colour": "blue"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_refused_by_field(changes: dict[str, Any], field: str, words: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as exc:
        cfg(**changes)
    assert words in str(exc.value)
    path = tmp_path / "bgp.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    with pytest.raises(ValueError, match=str(path)) as exc2:
        load_config(path)
    assert field.split(".")[0] in str(exc2.value) and words in str(exc2.value)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="No such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("asn: [1\n")
    with pytest.raises(ValueError, match="not YAML"):
        load_config(bad)


def test_rendered_policy() -> None:
    c = cfg(
        bfd={"enabled": True, "interval_ms": 50, "multiplier": 5},
        hold_time=6,
        default_policy={"communities": ["65000:1"]},
        vips={"203.0.113.20": {"med": 10, "local_pref": 300, "communities": ["65000:2", "65000:3:4"]}},
    )
    text = render_config(c, Path("/run/x/announce.conf"), "lbn0")
    assert "min rx interval 50 ms; min tx interval 50 ms; multiplier 5;" in text
    assert "hold time 6;" in text and "keepalive time 2;" in text and "bfd on;" in text
    assert "if net = 203.0.113.20/32 then {" in text
    assert "bgp_med = 10;" in text and "bgp_local_pref = 300;" in text
    assert "bgp_community.add((65000,2));" in text and "bgp_large_community.add((65000,3,4));" in text
    assert "bgp_community.add((65000,1));" in text  # the default, for every other VIP
    assert "next hop address 10.255.0.11;" in text
    assert "ipv6 {" not in text  # an IPv4 session without an IPv6 next hop carries no IPv6 VIPs
    assert 'include "/run/x/announce.conf";' in text
    assert "bfd" not in render_config(cfg(bfd={"enabled": False}), Path("/x"), "n")


def test_announcements_per_peer_and_family() -> None:
    c = cfg(
        peers=[
            {"name": "a", "address": "10.0.0.1", "asn": 65000, "next_hop6": "fd00::11"},
            {"name": "b", "address": "10.0.0.2", "asn": 65000},
        ]
    )
    v4, v6 = ipaddress.ip_address("203.0.113.20"), ipaddress.ip_address("fd00:203::20")
    text = render_announcements(c, {"a": frozenset({v4, v6}), "b": frozenset({v4})})
    assert "protocol static xdsr_s4_a {\n  ipv4 { table xdsr4_a; };\n  route 203.0.113.20/32 blackhole;\n}" in text
    assert "protocol static xdsr_s6_a {\n  ipv6 { table xdsr6_a; };\n  route fd00:203::20/128 blackhole;\n}" in text
    assert "protocol static xdsr_s6_b {\n  ipv6 { table xdsr6_b; };\n}" in text  # empty: nothing to announce


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed")
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"bfd": {"enabled": False}, "hold_time": 0},
        {"router_id": "192.0.2.1", "peers": [{"address": "fd00::1", "asn": 65001, "multihop": 2, "source": "fd00::9"}]},
        {
            "peers": [
                {"name": "a", "address": "10.0.0.1", "asn": 65000, "source": "10.0.0.9", "next_hop6": "fd00::11"},
                {"name": "b", "address": "fd00::1", "asn": 65002, "next_hop": "10.0.1.11", "segments": [10, 20]},
            ],
            "default_policy": {"med": 5, "communities": ["1:2", "3:4:5"]},
            "vips": {"203.0.113.20": {"local_pref": 200}, "fd00:203::20": {"med": 1}},
        },
    ],
)
def test_bird_accepts_what_the_agent_renders(changes: dict[str, Any], tmp_path: Path) -> None:
    c = cfg(**changes)
    include = tmp_path / "announce.conf"
    vips = frozenset({ipaddress.ip_address("203.0.113.20"), ipaddress.ip_address("fd00:203::20")})
    include.write_text(render_announcements(c, {n: vips for n in c.peer_names()}))
    conf = tmp_path / "bird.conf"
    conf.write_text(render_config(c, include, "lbn0"))
    r = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr + conf.read_text()


SHOW_PROTOCOLS = [
    (2002, "Name       Proto      Table      State  Since         Info"),
    (1002, "device1    Device     ---        up     08:22:33.559  "),
    (1002, "rt_a       BGP        ---        start  08:22:33.559  Active        Socket: Connection refused"),
    (1006, "  BGP state:          Active"),
    (1006, "    Neighbor address: 10.9.0.2"),
    (1006, "    Last error:       Socket: Connection refused"),
    (1006, "  Channel ipv4"),
    (1006, "    State:          DOWN"),
    (1006, "    Routes:         0 imported, 3 exported, 0 preferred"),
    (1006, "  Channel ipv6"),
    (1006, "    Routes:         0 imported, 1 exported, 0 preferred"),
    (1006, ""),
    (1002, "rt_b       BGP        ---        up     08:22:34.001  Established   "),
    (1006, "  BGP state:          Established"),
    (0, ""),
]


def test_show_protocols_is_parsed() -> None:
    protos = parse_protocols(Reply(SHOW_PROTOCOLS))
    a = protos["rt_a"]
    assert (a.proto, a.state, a.since) == ("BGP", "start", "08:22:33.559")
    assert a.info == "Active        Socket: Connection refused"
    assert a.details["BGP state"] == "Active" and a.details["Last error"] == "Socket: Connection refused"
    assert a.exported == {"ipv4": 3, "ipv6": 1}
    assert protos["rt_b"].details["BGP state"] == "Established" and protos["device1"].proto == "Device"


def test_only_installed_services_of_carried_segments_are_announced() -> None:
    """A peer gets the VIPs of its segments, in the families it carries, and
    only for services the data plane holds now."""
    c = cfg(
        peers=[
            {"name": "blue", "address": "10.0.0.1", "asn": 65000, "segments": [10], "next_hop6": "fd00::11"},
            {"name": "red", "address": "10.0.0.2", "asn": 65000, "segments": [20]},
        ]
    )

    def svc(vip: str, seg: int) -> Any:
        return SimpleNamespace(service=SimpleNamespace(key=ServiceKey(ipaddress.ip_address(vip), 80, 6, seg_id=seg)))

    held = [svc("203.0.113.1", 10), svc("fd00::1", 10), svc("203.0.113.1", 20), svc("fd00::2", 20)]
    pending = svc("203.0.113.9", 10)  # in the desired state, not installed (a failed apply)
    installed = {s.service.key: s for s in held}
    agent = SimpleNamespace(vips=HeldVips(held_pairs([*held, pending], installed)))  # as the agent counts them
    got = wanted(c, agent)  # type: ignore[arg-type]
    assert got == {
        "blue": frozenset({ipaddress.ip_address("203.0.113.1"), ipaddress.ip_address("fd00::1")}),
        "red": frozenset({ipaddress.ip_address("203.0.113.1")}),  # red has no IPv6 next hop
    }
