"""Validation of the desired-state file: every error names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdsr.dataplane.config import ConfigError, load_config, parse_config

GOOD = {
    "services": [
        {
            "vip": "203.0.113.10",
            "port": 80,
            "protocol": "tcp",
            "segment": {"type": "vlan", "id": 10},
            "table_size": 65537,
            "backends": [{"mac": "02:00:00:00:01:01", "vlan": 100, "weight": 1}],
        }
    ]
}


def _with(**changes: object) -> dict[str, object]:
    svc = dict(GOOD["services"][0])  # type: ignore[index]
    svc.update(changes)
    return {"services": [svc]}


def test_good_config_converts() -> None:
    (svc,) = parse_config(GOOD).to_services()
    assert svc.table_size == 65537
    assert str(svc.key) == "203.0.113.10:80/tcp vlan 10"
    assert svc.backends[0].mac == "02:00:00:00:01:01"


def test_default_table_size_follows_backend_count() -> None:
    cfg = _with(table_size=None, backends=[{"mac": f"02:00:00:00:01:{i:02x}"} for i in range(40)])
    (svc,) = parse_config(cfg).to_services()
    assert svc.table_size >= 4000
    (empty,) = parse_config(_with(table_size=None, backends=[])).to_services()
    assert empty.table_size >= 2


@pytest.mark.parametrize(
    ("cfg", "where", "what"),
    [
        (_with(backends=[{"mac": "zz:00:00:00:01:01"}]), "services[0].backends[0].mac", "invalid MAC"),
        (_with(backends=[{"mac": "ff:ff:ff:ff:ff:ff"}]), "services[0].backends[0].mac", "multicast"),
        (_with(backends=[{"mac": "02:00:00:00:01:01", "vlan": 4095}]), "services[0].backends[0].vlan", "4094"),
        (_with(backends=[{"mac": "02:00:00:00:01:01", "weight": -1}]), "services[0].backends[0].weight", "0"),
        (_with(segment={"type": "vlan", "id": 5000}), "services[0].segment.id", "4094"),
        # An overlay service's members are behind tunnels, a VLAN service's are not.
        (
            _with(segment={"type": "vxlan", "id": 5000}),
            "services[0].backends[0].vni",
            "required for a member of a vxlan",
        ),
        (
            _with(segment={"type": "geneve", "id": 5000}, backends=[{"mac": "02:00:00:00:01:01", "vni": 7}]),
            "services[0].backends[0].vtep",
            "required for a member of a geneve",
        ),
        (
            _with(backends=[{"mac": "02:00:00:00:01:01", "vni": 7, "vtep": "192.0.2.7"}]),
            "services[0].backends[0]",
            "vni and vtep are for members of a vxlan or geneve service",
        ),
        (
            _with(
                segment={"type": "vxlan", "id": 5000},
                backends=[{"mac": "02:00:00:00:01:01", "vni": 7, "vtep": "192.0.2.7", "vlan": 3}],
            ),
            "services[0].backends[0].vlan",
            "must be 0",
        ),
        (_with(table_size=65536), "services[0].table_size", "not prime"),
        (
            _with(table_size=3, backends=[{"mac": f"02:00:00:00:01:0{i}"} for i in range(1, 6)]),
            "services[0].table_size",
            "below the 5 weighted members",
        ),
        (_with(port=0), "services[0].port", "greater than or equal to 1"),
        (_with(port=70000), "services[0].port", "less than or equal to 65535"),
        (_with(protocol="sctp"), "services[0].protocol", "'tcp' or 'udp'"),
        (_with(vip="300.1.1.1"), "services[0].vip", "IP"),
        (_with(vip="224.0.0.1"), "services[0].vip", "cannot be a VIP"),
        (_with(colour="blue"), "services[0].colour", "Extra inputs"),
        (
            _with(backends=[{"mac": "02:00:00:00:01:01", "vlan": 1}, {"mac": "02:00:00:00:01:01", "vlan": 1}]),
            "services[0].backends[1]",
            "duplicates backends[0]",
        ),
        ({"services": [GOOD["services"][0], GOOD["services"][0]]}, "services[1]", "is already services[0]"),
    ],
)
def test_invalid_configs_name_the_field(cfg: dict[str, object], where: str, what: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(cfg)
    msg = str(exc.value)
    assert msg.startswith(f"{where}:"), msg
    assert what in msg


def test_yaml_and_json_files(tmp_path: Path) -> None:
    y = tmp_path / "s.yaml"
    y.write_text(
        "services:\n  - vip: 2001:db8::1\n    port: 53\n    protocol: udp\n"
        "    backends:\n      - {mac: '02:00:00:00:01:01', vlan: 7}\n"
    )
    (svc,) = load_config(y).to_services()
    assert svc.key.vip.version == 6
    j = tmp_path / "s.json"
    j.write_text('{"services": []}')
    assert load_config(j).to_services() == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("services: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "missing.yaml")


def test_the_index_places_a_full_data_plane() -> None:
    """4096 services, each with its fragment entry, fit the default index
    within the probe limit the program walks (pure: no kernel needed)."""
    import ipaddress
    import socket

    from xdsr.dataplane import abi
    from xdsr.dataplane.loader import DEFAULT_LIMITS
    from xdsr.dataplane.model import ServiceKey
    from xdsr.dataplane.state import _build_index

    keys = [
        ServiceKey(ipaddress.ip_address(f"10.{i >> 8}.{i & 255}.1"), 80, socket.IPPROTO_TCP, abi.SegType.VLAN, 0)
        for i in range(DEFAULT_LIMITS.max_services)
    ]
    keys += [k.fragment_key() for k in keys]
    entries = [(k, abi.SvcEntry(flags=abi.SvcFlags.USED)) for k in keys]
    index = _build_index(entries, DEFAULT_LIMITS.index_size)
    assert len(index) == DEFAULT_LIMITS.index_size * 64


def test_overlay_members_go_out_through_the_next_hop() -> None:
    cfg = parse_config(
        _with(
            segment={"type": "vxlan", "id": 5000},
            backends=[{"mac": "02:00:00:00:01:01", "vni": 7, "vtep": "2001:db8::7", "id": "m1"}],
        )
    )
    # Without a next hop towards the endpoint the member stays out, named.
    ((_, svc, unresolved),) = cfg.build()
    assert svc.backends == () and unresolved == ("m1",)
    (svc,) = cfg.to_services(next_hop="02:00:00:00:00:FE")
    (be,) = svc.backends
    assert (be.vni, str(be.vtep), be.hop_mac, be.vlan) == (7, "2001:db8::7", "02:00:00:00:00:fe", 0)
    assert svc.key.overlay and svc.key.seg_id == 5000
