"""The `[xdsr]` section of octavia.conf, read by the driver (in octavia-api)
and by the provider agent (in octavia-driver-agent) from the same file.

    [xdsr]
    api_url = http://xdsr-api.example:9876
    token_file = /etc/octavia/xdsr-token      # an admin token of the xdsr API server
    spool_dir = /var/lib/octavia/xdsr-spool   # shared by octavia-api and the driver agent on a host

Options are registered on Octavia's global CONF after it has parsed its files;
oslo.config reads late-registered options from the parsed files as well.
"""

from __future__ import annotations

from pathlib import Path

from oslo_config import cfg

GROUP = "xdsr"

OPTS = [
    cfg.StrOpt("api_url", default="http://127.0.0.1:9876", help="Base URL of the xdsr API server."),
    cfg.StrOpt(
        "token_file",
        help="File holding an admin token of the xdsr API server (needed to give objects Octavia's ids).",
    ),
    cfg.StrOpt("token", secret=True, help="The admin token itself, if token_file is not used."),
    cfg.StrOpt(
        "spool_dir",
        default="/var/lib/octavia/xdsr-spool",
        help="Where the driver queues changes for the provider agent. octavia-api and octavia-driver-agent "
        "run on the same host (octavia-lib's sockets require it) and must both be able to write here.",
    ),
    cfg.FloatOpt("request_timeout", default=5.0, help="Seconds for one request to the xdsr API server."),
    cfg.FloatOpt(
        "apply_timeout",
        default=30.0,
        help="How long the agent keeps retrying a change while the xdsr API server is unreachable before it "
        "reports the object ERROR.",
    ),
    cfg.FloatOpt(
        "commit_timeout",
        default=30.0,
        help="How long the agent waits for Octavia to commit a change it was told about; a create that never "
        "shows up was rolled back and is dropped.",
    ),
    cfg.FloatOpt(
        "observe_timeout",
        default=120.0,
        help="How long the agent waits for the LB nodes to apply a change before it reports ERROR.",
    ),
    cfg.FloatOpt("status_interval", default=5.0, help="Seconds between checks of operating statuses."),
    cfg.FloatOpt("stats_interval", default=10.0, help="Seconds between listener statistics updates."),
    cfg.StrOpt(
        "neutron",
        default="auto",
        choices=["auto", "true", "false"],
        help="Look up members' MACs, networks' segments and hosts' tunnel endpoints in Neutron. auto: when "
        "Octavia's network driver is not the no-op one. Without Neutron, members go to xdsr by address and "
        "subnet_id (the xdsr API server maps subnets to segments with its --networks-file) and the LB nodes "
        "resolve their MACs.",
    ),
    cfg.StrOpt(
        "neutron_cloud",
        help="A clouds.yaml cloud for the Neutron lookups; default: Octavia's [service_auth] credentials.",
    ),
    cfg.FloatOpt("neutron_cache_seconds", default=300.0, help="How long a Neutron answer is reused."),
    cfg.DictOpt(
        "tunnel_endpoints",
        default={},
        help="host:address pairs: the tunnel endpoint (VTEP) of each hypervisor whose L2 agent does not report "
        "configurations.tunneling_ip in Neutron's agents API (OVN chassis). A member on a VXLAN or Geneve network "
        "bound to a host with no known endpoint goes to ERROR.",
    ),
]


def register(conf: cfg.ConfigOpts | None = None) -> cfg.ConfigOpts:
    conf = conf or cfg.CONF
    if GROUP not in conf or "api_url" not in conf[GROUP]:
        conf.register_opts(OPTS, group=GROUP)
    return conf


def token(conf: cfg.ConfigOpts) -> str:
    """The xdsr API token, read now (a rotated file is picked up)."""
    group = conf[GROUP]
    if group.token_file:
        return Path(group.token_file).read_text().strip()
    if group.token:
        return str(group.token)
    raise RuntimeError("[xdsr] token_file (or token) is not set: the agent cannot authenticate to xdsr")
