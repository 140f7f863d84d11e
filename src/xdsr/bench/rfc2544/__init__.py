"""`xdsr bench rfc2544`: the paper's RFC 2544 and IMIX throughput tests
(Table 2, Figs. 5-10) on one machine, with XDP live frames over a veth pair.
See docs/benchmarks.md.

Modules:
  frames    templates, checksum partial sums, how frame sizes are counted
  programs  the bpf/bench programs: ctypes mirrors of bench.h, load, read
  duts      the devices under test: loopback, iptables DNAT, xdsr A and B, broken
  harness   the testbed, the trials, the results
  report    spreads, ratios, targets, Markdown and JSON
  plots     the PNG figures
"""
