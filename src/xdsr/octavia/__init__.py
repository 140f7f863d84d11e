"""xdsr as an OpenStack Octavia provider driver (docs/octavia.md).

- `driver`: the provider driver Octavia's API loads (entry point
  `octavia.api.drivers` → `xdsr`). It refuses what L2DSR cannot do with
  UnsupportedOptionError, queues everything else in a spool directory and
  returns: no network call, no state in the object.
- `agent`: the provider agent `octavia-driver-agent` runs (entry point
  `octavia.driver_agent.provider_agents` → `xdsr`). It applies queued changes
  to the xdsr API server once Octavia has committed them (one request and
  one write per change: the whole tree), and reports statuses and
  statistics back through octavia-lib's DriverLibrary (`report`, `follow`;
  `changes` reads a queued change against Octavia's tree).
- `validate`, `mapping`: Octavia's provider data models → refusals (the
  xdsr API's own schemas judge them), and → xdsr API bodies (pure functions).
- `local`: the real Octavia API and driver agent as local processes (tests,
  the latency benchmark in `bench`).

`driver`, `config`, `neutron` and the agent's entry point import octavia-lib
or oslo: install the extra, `pip install xdsr[octavia]`. Neither the driver
nor the agent imports the xdsr API server, FastAPI or numpy.
"""
