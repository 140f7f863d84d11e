"""Frame bytes, for the code that builds or reads whole Ethernet frames (the
agent's ARP/ND and health checks, the lab, the benchmarks).

  frames      MAC addresses, the Ethernet header and its 802.1Q tag, the
              Internet checksum and the L4 pseudo-header
  sockfilter  classic BPF socket filters: a small assembler with labels
"""
