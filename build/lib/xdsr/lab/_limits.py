"""Resource limits for the traffic tools (stdlib only, like the tools)."""

from __future__ import annotations

import resource


def raise_fd_limit(needed: int) -> None:
    """Raise the soft open-files limit towards `needed` (at most the hard
    limit): every connection or flow is a socket, and many CI machines still
    default to a soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
