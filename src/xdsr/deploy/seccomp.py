"""The LB node agent's seccomp profile: the container runtimes' default, plus bpf with CAP_BPF.

The default profile of podman 4.3 (/usr/share/containers/seccomp.json, as
Docker's) allows bpf() and perf_event_open() only to a container holding
CAP_SYS_ADMIN, so an agent given CAP_BPF and CAP_PERFMON instead still gets
EPERM from libbpf. derive() moves the two calls to rules of their own, gated
on CAP_BPF and CAP_PERFMON (runtimes honour `includes.caps`: podman, CRI-O,
containerd), and leaves everything else as the runtime's default has it.
The shipped profile (seccomp-bpf.json, `xdsr manifests --seccomp-profile`)
is derive() of Debian 12's file.
"""

from __future__ import annotations

import copy
from typing import Any

GATED = {"bpf": "CAP_BPF", "perf_event_open": "CAP_PERFMON"}


def derive(default: dict[str, Any]) -> dict[str, Any]:
    profile = copy.deepcopy(default)
    for rule in profile["syscalls"]:
        caps = set((rule.get("includes") or {}).get("caps") or []) | set((rule.get("excludes") or {}).get("caps") or [])
        if "CAP_SYS_ADMIN" in caps:
            rule["names"] = [n for n in rule["names"] if n not in GATED]
    profile["syscalls"] = [r for r in profile["syscalls"] if r["names"]]
    for name, cap in GATED.items():
        profile["syscalls"].append(
            {
                "names": [name],
                "action": "SCMP_ACT_ALLOW",
                "args": [],
                "comment": f"xdsr: {name} with {cap}",
                "includes": {"caps": [cap]},
                "excludes": {},
            }
        )
    return profile
