"""What an L2 direct-server-return load balancer cannot do, and why.

An LB node rewrites only the MAC addresses and the VLAN of a frame (on a
VXLAN or Geneve segment: the inner destination MAC, the VNI and the outer
destination, the member's tunnel endpoint) and sends it on
(docs/dataplane.md): addresses, ports and payload reach the member
unchanged, replies go from the member straight to the client, and the node
keeps no per-connection state — a flow's member is a pure function of its
5-tuple (Maglev). Every refusal below follows from one of those facts. The
messages are returned verbatim in the 400 that refuses the request, and
docs/api.md lists them.
"""

from __future__ import annotations

LISTENER_PROTOCOLS = ("TCP", "UDP")
POOL_PROTOCOLS = ("TCP", "UDP")
# Both supported algorithms are the same thing in xdsr: Maglev over the
# 5-tuple hash. ROUND_ROBIN is accepted because it is what clients send by
# default; SOURCE_IP_PORT is the honest name.
LB_ALGORITHMS = ("ROUND_ROBIN", "SOURCE_IP_PORT")

# Octavia's own values, so that a known-but-refused value gets its reason and
# an unknown one a plain "must be one of".
OCTAVIA_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "TERMINATED_HTTPS", "UDP", "SCTP", "PROMETHEUS", "PROXY", "PROXYV2")
OCTAVIA_ALGORITHMS = ("ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT")

# Health-monitor types: Octavia's, but SCTP. LB nodes check HTTP, HTTPS and
# TLS-HELLO as a TCP handshake on the port (docs/agent.md, Health checks).
HM_TYPES = ("HTTP", "HTTPS", "PING", "TCP", "TLS-HELLO", "UDP-CONNECT")
HM_TYPE_REASONS = {"SCTP": "SCTP health monitors are not supported: xdsr serves no SCTP pools"}
# The types whose http_method, url_path and expected_codes mean something.
HTTP_MONITORS = ("HTTP", "HTTPS")
# Octavia's rule: what may monitor a UDP pool; UDP-CONNECT monitors nothing else.
UDP_POOL_MONITORS = ("UDP-CONNECT", "TCP", "HTTP")
UDP_ONLY_MONITORS = ("UDP-CONNECT",)

NOT_PROXY = (
    "L2DSR forwards frames without terminating connections (it rewrites only the destination MAC and VLAN), "
    "so it can serve only TCP and UDP"
)

PROTOCOL_REASONS = {
    "HTTP": f"HTTP is not supported: {NOT_PROXY}; an HTTP service is served as a TCP listener",
    "HTTPS": f"HTTPS is not supported: {NOT_PROXY}; pass TLS through with a TCP listener",
    "TERMINATED_HTTPS": f"TERMINATED_HTTPS is not supported: {NOT_PROXY}; TLS must end on the members",
    "PROMETHEUS": f"PROMETHEUS is not supported: {NOT_PROXY}; xdsr exports its metrics elsewhere",
    "SCTP": "SCTP is not supported: the LB node's data plane parses and hashes only TCP and UDP ports",
    "PROXY": f"PROXY is not supported: {NOT_PROXY} and cannot prepend a PROXY protocol header",
    "PROXYV2": f"PROXYV2 is not supported: {NOT_PROXY} and cannot prepend a PROXY protocol header",
}

TLS = (
    "TLS is not supported: L2DSR never terminates or originates connections, "
    "so certificates, ciphers and TLS versions belong on the members"
)
L7 = (
    "L7 policies are not supported: L2DSR forwards frames without reading requests, so it cannot route on their content"
)
INSERT_HEADERS = "insert_headers is not supported: L2DSR forwards frames unchanged and never touches HTTP headers"
ALLOWED_CIDRS = (
    "allowed_cidrs is not supported: LB nodes do not filter traffic; packets reach the members with the "
    "client's source address, so restrict sources with the members' security groups"
)
CONNECTION_LIMIT = (
    "only -1 (unlimited) is supported: LB nodes keep no per-connection state (a flow's member is a hash of "
    "its 5-tuple), so they cannot count connections"
)
SESSION_PERSISTENCE = (
    "session persistence is not supported: a flow's member is a stateless hash of its 5-tuple; "
    "cookies are invisible to L2DSR and source-IP stickiness would need per-client state"
)
ALGORITHM_REASONS = {
    "LEAST_CONNECTIONS": "LEAST_CONNECTIONS is not supported: LB nodes keep no per-connection state, so they cannot "
    "count connections; use ROUND_ROBIN or SOURCE_IP_PORT (both mean Maglev over the 5-tuple hash)",
    "SOURCE_IP": "SOURCE_IP is not supported: every LB node of a group hashes the full 5-tuple, and ECMP may send "
    "a client's flows to any node; use ROUND_ROBIN or SOURCE_IP_PORT (both mean Maglev over the 5-tuple hash)",
}
BACKUP = (
    "backup members are not supported: the Maglev table holds every member with weight > 0 and there is no "
    "per-flow failover state; use weight 0 to keep a member out of rotation"
)
PORT_TRANSLATION = "L2DSR does not translate ports: a member must listen on the listener's protocol_port"
PROTOCOL_MISMATCH = "L2DSR forwards the listener's packets unchanged, so the pool must speak the listener's protocol"
# Overlays (VXLAN, Geneve): the node rewrites the inner destination MAC, the
# VNI and the outer destination of the frame it received, and sends it back
# out. It neither adds nor strips an encapsulation, nor swaps one kind for
# another (docs/dataplane.md).
MIXED_SEGMENTS = (
    "L2DSR rewrites a frame in place: a VIP on a VLAN serves members on VLANs, a VIP on a VXLAN (Geneve) segment "
    "serves members on VXLAN (Geneve) segments; the LB node adds, strips or converts no encapsulation"
)
VTEP_ON_VLAN = "vtep_address is the tunnel endpoint of a member on a VXLAN or Geneve segment; this member is on a VLAN"
INNER_MAC_REQUIRED = (
    "required for a member on a VXLAN or Geneve segment: its MAC on the tenant network (the LB nodes are on "
    "no tenant network, so they cannot resolve it by ARP; in OpenStack, its Neutron port's MAC)"
)
VTEP_REQUIRED = (
    "required for a member on a VXLAN or Geneve segment: the tunnel endpoint of the member's host, where the "
    "LB nodes send its frames encapsulated"
)
VIP_REQUIRED = (
    "vip_address is required: xdsr allocates no addresses; give the VIP (e.g. from a Neutron port), "
    "vip_subnet_id/vip_network_id/vip_port_id are only stored"
)
FLAVOR = "flavors are not supported: every xdsr load balancer is the same XDP data plane"
ADDITIONAL_VIPS = "additional VIPs are not supported: an xdsr load balancer has one VIP; create one per address"
VIP_SG_IDS = (
    "VIP security groups are not supported: LB nodes do not filter traffic; restrict sources with the "
    "members' security groups"
)
PROVIDER = "only the 'xdsr' provider serves this API"
HSTS = "HSTS is not supported: L2DSR never sees HTTP responses, so it cannot add headers to them"
HM_HTTP_VERSION = "http_version and domain_name are not supported by xdsr's health monitors"
