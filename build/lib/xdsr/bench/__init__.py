"""Benchmarks: data-plane cost per packet, throughput (RFC 2544), control-plane latency."""
