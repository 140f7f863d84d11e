"""xdsr as an OpenStack Octavia provider driver (docs/octavia.md).

- `driver`: the provider driver Octavia's API loads (entry point
  `octavia.api.drivers` → `xdsr`). It refuses what L2DSR cannot do with
  UnsupportedOptionError, queues everything else in a spool directory and
  returns: no network call, no state in the object.
- `agent`: the provider agent `octavia-driver-agent` runs (entry point
  `octavia.driver_agent.provider_agents` → `xdsr`). It applies queued changes
  to the xdsr API server once Octavia has committed them, and reports
  statuses and statistics back through octavia-lib's DriverLibrary.
- `validate`, `mapping`: Octavia's provider data models → refusals, and →
  xdsr API bodies (pure functions).
- `local`: the real Octavia API and driver agent as local processes (tests,
  the latency benchmark in `bench`).

Everything here but `validate`, `mapping` and `spool` imports octavia-lib or
oslo: install the extra, `pip install xdsr[octavia]`.
"""
