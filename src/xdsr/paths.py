"""Where the compiled BPF objects are.

An installed wheel carries them in the package (xdsr/bpf/, built by
setup.py); a source checkout (an editable install) has them in bpf/build,
built by `make -C bpf` (scripts/install.sh runs it). XDSR_BPF_DIR overrides
both.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGED = Path(__file__).resolve().parent / "bpf"


def bpf_dir() -> Path:
    env = os.environ.get("XDSR_BPF_DIR")
    if env:
        return Path(env)
    return PACKAGED if PACKAGED.is_dir() else REPO_ROOT / "bpf" / "build"


def bpf_object(name: str) -> Path:
    """Path of build/<name>.o, or a clear error when it was never built."""
    path = bpf_dir() / f"{name}.o"
    if not path.exists():
        raise FileNotFoundError(
            f"BPF object {path} is missing: build it with `make -C {REPO_ROOT / 'bpf'}` (scripts/install.sh does this)"
        )
    return path
