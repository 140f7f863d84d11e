"""xdsr: a software L2 direct-server-return load balancer for clouds."""

__version__ = "0.1.0"
