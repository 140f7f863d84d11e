"""Where the compiled BPF objects are.

The objects are built from bpf/ at set-up (scripts/install.sh runs
`make -C bpf`). XDSR_BPF_DIR overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def bpf_dir() -> Path:
    env = os.environ.get("XDSR_BPF_DIR")
    return Path(env) if env else REPO_ROOT / "bpf" / "build"


def bpf_object(name: str) -> Path:
    """Path of build/<name>.o, or a clear error when it was never built."""
    path = bpf_dir() / f"{name}.o"
    if not path.exists():
        raise FileNotFoundError(
            f"BPF object {path} is missing: build it with `make -C {REPO_ROOT / 'bpf'}` (scripts/install.sh does this)"
        )
    return path
