"""The LB node agent (`xdsr agent`): one per LB node, it owns the node's XDP
data plane and serves the operator an authenticated HTTP API. See
docs/agent.md.

Modules:
  server        startup and shutdown: bind, attach, serve, register
  api           the HTTP API (FastAPI) and its bearer-token check
  core          Agent: applies desired states, keeps MACs fresh, reports
  rules         DesiredState -> data-plane Services (checks, table sizes)
  resolver      ARP/ND questions over the trunk (AF_PACKET in the LBN's netns)
  frames        the ARP probe / Neighbor Solicitation frames, answer parsing
  neighbors     known MACs, when to ask again, the cache file
  registration  the node's LbnRecord in the store, on a lease
  metrics       Prometheus metrics, counters read from the maps at scrape time
  bgp           the BGP speaker: what the node announces and when, drain (docs/bgp.md)
  bird          the BIRD 2 daemon the agent owns: config, process (PDEATHSIG), control socket
"""
