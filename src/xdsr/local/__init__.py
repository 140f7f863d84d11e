"""The real components as local processes, for the tests, the demo, the
benchmarks and `xdsr up`: tooling on top of the product, never imported by it.

  process   Child: the one wrapper around a child process (own session,
            stopped by process group); free_port
  etcd      EtcdServer: a single-member etcd on loopback
  cluster   LocalCluster: etcd, API server, operator and one agent per LB
            node, each a restartable process
  octavia   LocalOctavia: the real Octavia API and driver agent with xdsr as
            their provider
  probes    Probes: whether each LB node's attached program forwards a VIP

Nothing is imported with the package: `xdsr.lab` uses `process` without
paying for httpx or the data plane's binding.
"""
