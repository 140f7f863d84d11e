"""The Python mirror (xdsr.dataplane.abi) has exactly the layout of the C
header, as clang compiled it into the program's BTF."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from typing import Any

import pytest

from xdsr.dataplane import abi
from xdsr.paths import bpf_object

# BTF types of the object that are not shared structures: the map template,
# the anchor that makes clang emit the rest, and the parser's packet state
# (the argument of the global function xdsr_overlay, private to the program).
NOT_SHARED = {"xdsr_abi_types", "xdsr_barrier_inner", "xdsr_pkt"}


@pytest.fixture(scope="module")
def btf() -> dict[str, dict[str, Any]]:
    if not shutil.which("bpftool"):
        pytest.skip("bpftool is not installed")
    out = subprocess.run(
        ["bpftool", "-j", "btf", "dump", "file", str(bpf_object("xdsr_lb"))], check=True, capture_output=True, text=True
    ).stdout
    types = json.loads(out)["types"]
    # Types only: a map variable may share its value struct's name.
    kinds = ("STRUCT", "UNION", "ENUM")
    return {"by_id": {t["id"]: t for t in types}, "by_name": {t["name"]: t for t in types if t["kind"] in kinds}}


def _size(btf: dict[str, dict[str, Any]], type_id: int) -> int:
    t = btf["by_id"][type_id]
    kind = t["kind"]
    if kind in ("INT", "STRUCT", "UNION", "ENUM"):
        return int(t["size"])
    if kind == "ARRAY":
        return int(t["nr_elems"]) * _size(btf, t["type_id"])
    if kind in ("TYPEDEF", "VOLATILE", "CONST"):
        return _size(btf, t["type_id"])
    raise AssertionError(f"unexpected BTF kind {kind}")


@pytest.mark.parametrize("name", sorted(abi.STRUCTS))
def test_struct_layout(btf: dict[str, dict[str, Any]], name: str) -> None:
    py = abi.STRUCTS[name]
    c = btf["by_name"][name]
    assert ctypes.sizeof(py) == c["size"], f"{name}: size"
    py_fields = [(f[0], getattr(py, f[0]).offset, getattr(py, f[0]).size) for f in py._fields_]
    c_fields = [(m["name"], m["bits_offset"] // 8, _size(btf, m["type_id"])) for m in c["members"]]
    assert py_fields == c_fields


def test_every_shared_struct_is_mirrored(btf: dict[str, dict[str, Any]]) -> None:
    shared = {
        n for n, t in btf["by_name"].items() if t["kind"] in ("STRUCT", "UNION") and n.startswith("xdsr_")
    } - NOT_SHARED
    assert shared == set(abi.STRUCTS)


@pytest.mark.parametrize("name", sorted(abi.ENUMS))
def test_enum_values(btf: dict[str, dict[str, Any]], name: str) -> None:
    c = {v["name"]: v["val"] for v in btf["by_name"][name]["values"]}
    assert c == abi.ENUMS[name]


def test_every_shared_enum_is_mirrored(btf: dict[str, dict[str, Any]]) -> None:
    shared = {n for n, t in btf["by_name"].items() if t["kind"] == "ENUM" and n.startswith("xdsr_")}
    assert shared == set(abi.ENUMS)


def test_tunnel_entries_are_backend_entries() -> None:
    # A tunnel backend is TUNNEL_STRIDE consecutive entries of xdsr_backends.
    for part in (abi.BackendVtep, abi.BackendHop):
        assert ctypes.sizeof(part) == ctypes.sizeof(abi.Backend)


def test_reason_verdicts_cover_every_reason() -> None:
    assert set(abi.REASON_VERDICT) == set(abi.Reason)
    assert len(abi.Reason) == abi.REASON_MAX


@pytest.mark.parametrize(
    ("vip", "port", "proto", "seg_id", "packed"),
    [
        # IPv4 as IPv4-mapped IPv6 with family 4, the port in network byte order, the rest native
        # (x86: little endian); the segment is its type (VLAN = 1) in the top byte and its id below.
        ("10.0.0.1", 80, 6, 7, "00000000000000000000ffff0a000001" + "0050" + "06" + "04" + "07000001"),
        ("2001:db8::fff", 443, 17, 4094, "20010db8000000000000000000000fff" + "01bb" + "11" + "06" + "fe0f0001"),
        # The IPv6 address ::ffff:10.0.0.1 is not the IPv4 VIP 10.0.0.1: the family differs.
        ("::ffff:10.0.0.1", 80, 6, 7, "00000000000000000000ffff0a000001" + "0050" + "06" + "06" + "07000001"),
    ],
)
def test_a_service_key_packs_through_the_mirror(vip: str, port: int, proto: int, seg_id: int, packed: str) -> None:
    import ipaddress

    from xdsr.dataplane.model import ServiceKey

    key = ServiceKey(ipaddress.ip_address(vip), port, proto, abi.SegType.VLAN, seg_id)
    assert key.pack().hex() == packed
    assert len(key.pack()) == ctypes.sizeof(abi.SvcKey)
    assert ServiceKey.unpack(bytes.fromhex(packed)) == key
    assert ServiceKey.from_abi(key.to_abi()) == key
