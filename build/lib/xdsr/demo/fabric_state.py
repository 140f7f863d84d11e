"""The data plane's desired state for a lab fabric's services."""

from __future__ import annotations

from typing import Any

from xdsr.lab import Fabric


def dataplane_config(fabric: Fabric, tenants: set[str] | None = None) -> dict[str, Any]:
    """`xdsr dp apply` input serving every (or the given) tenant's services."""
    services = []
    for s in fabric.services():
        if tenants is not None and s.tenant not in tenants:
            continue
        services.append(
            {
                "vip": s.vip,
                "port": s.port,
                "protocol": s.proto,
                "segment": {"type": s.seg_type, "id": s.vid},
                "backends": [{"mac": b.mac, "vlan": b.vid} for b in s.backends],
            }
        )
    return {"services": services}
