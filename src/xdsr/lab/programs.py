"""The lab's own BPF programs (bpf/lab/): 802.1Q access ports in tc, XDP on
veth peers, and their counters.

XDP goes through the data plane's loader (xdsr.dataplane.loader.attach_xdp,
the one way xdsr attaches XDP) and counters are read through the project's
libbpf binding. tc has no such binding: access ports are set up with one
`tc -batch`, and `tc` names the programs it runs so that their maps can be
read by id.

Nothing is pinned: the access-port VID travels in the tc filter's classid
(see bpf/lab/vlan_access.bpf.c), and attached programs go away with their
namespace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from xdsr import paths
from xdsr.dataplane import libbpf as bpf
from xdsr.dataplane import loader
from xdsr.net.frames import mac_str

from .commands import LabError, run_cmd

# Names of the counters of bpf/lab/vlan_access.bpf.c, in the order of its enum.
ACCESS_COUNTERS = (
    "egress_tagged",
    "egress_drop",
    "ingress_pass",
    "ingress_other_vid",
    "ingress_untagged",
    "ingress_bad",
)

# In xdp_census keys, the VID of an untagged frame.
UNTAGGED = 0xFFFF


class CensusKey(NamedTuple):
    """A kind of frame counted by bpf/lab/xdp_census.bpf.c."""

    dst: str  # destination MAC
    vid: int  # outer 802.1Q VID as found in the frame, UNTAGGED if none
    proto: int  # EtherType after the tag (0x0800, 0x86dd, 0x0806...)


def add_access_port(ns: str, ifname: str, vid: int) -> None:
    """Make `ifname` an 802.1Q access port of VLAN `vid` (see Lab.add_access_port)."""
    if not 1 <= vid <= 4094:
        raise ValueError(f"VID {vid} out of range 1..4094")
    obj = paths.bpf_object("vlan_access")
    batch = "\n".join(
        [f"qdisc replace dev {ifname} clsact"]
        + [
            f"filter replace dev {ifname} {hook} pref 1 handle 1 bpf da obj {obj} sec tc/{hook} classid 1:{vid:x}"
            for hook in ("egress", "ingress")
        ]
    )
    run_cmd(["tc", "-n", ns, "-batch", "-"], input=batch + "\n")


def access_port_counters(ns: str, ifname: str) -> dict[str, int]:
    """Verdict counters of an access port's two programs, by name."""
    totals = dict.fromkeys(ACCESS_COUNTERS, 0)
    for direction in ("egress", "ingress"):
        out = run_cmd(["tc", "-n", ns, "-j", "filter", "show", "dev", ifname, direction]).stdout
        for flt in json.loads(out or "[]"):
            prog_id = flt.get("options", {}).get("prog", {}).get("id")
            if prog_id is None:
                continue
            for key, value in _counters(prog_id):
                idx = int.from_bytes(key, "little")
                if idx < len(ACCESS_COUNTERS):
                    totals[ACCESS_COUNTERS[idx]] += value
    return totals


def attach_xdp(ns: str, ifindex: int, obj: str | Path = "xdp_pass", program: str | None = None) -> int:
    """Attach a lab XDP program in native mode where none runs; return its id.

    `obj` is a lab object name ("xdp_pass", "xdp_census") or a path;
    `program` the program in it (by default the one named like the object)."""
    path = Path(obj) if isinstance(obj, Path) or "/" in str(obj) else paths.bpf_object(str(obj))

    def refuse(current: int) -> None:
        raise LabError(f"ifindex {ifindex} in {ns} already runs XDP program id {current}")

    with bpf.load_program(str(path), program or path.name.split(".")[0]) as prog:
        try:
            loader.attach_xdp(ifindex, prog, netns=ns, mode="native", check_current=refuse)
        except bpf.BpfError as exc:
            raise LabError(f"XDP program from {path} did not attach to {ns}/ifindex {ifindex}: {exc}") from None
        return prog.id


def detach_xdp(ns: str, ifindex: int) -> None:
    loader.detach_xdp(ifindex, netns=ns, mode="native")


def xdp_prog_id(ns: str, ifindex: int) -> int | None:
    """Id of the XDP program on an interface, None if there is none."""
    return loader.xdp_prog_id(ifindex, netns=ns) or None


def xdp_census(prog_id: int) -> dict[CensusKey, int]:
    """Frames counted so far by an xdp_census program."""
    counts: dict[CensusKey, int] = {}
    for key, value in _counters(prog_id):
        if len(key) < 10:
            continue
        ck = CensusKey(mac_str(key[:6]), int.from_bytes(key[6:8], "little"), int.from_bytes(key[8:10], "big"))
        counts[ck] = counts.get(ck, 0) + value
    return counts


def _counters(prog_id: int) -> Iterator[tuple[bytes, int]]:
    """(key, sum over CPUs) of every per-CPU u64 counter map of a program."""
    with bpf.Program.from_id(prog_id) as prog:
        map_ids = prog.map_ids()
    for map_id in map_ids:
        with bpf.Map.from_id(map_id) as m:
            if m.info.type in (bpf.BPF_MAP_TYPE_PERCPU_ARRAY, bpf.BPF_MAP_TYPE_PERCPU_HASH) and m.info.value_size == 8:
                yield from m.percpu_sums().items()
