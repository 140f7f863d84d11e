"""How the lab runs system commands (iproute2, ethtool, sysctl), and its
errors."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence

log = logging.getLogger("xdsr.lab")


class LabError(RuntimeError):
    """A lab operation failed, or teardown left something behind."""


class LabCommandError(LabError):
    """A command run by the lab exited non-zero."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip()
        super().__init__(f"`{' '.join(self.cmd)}` exited {returncode}: {detail}")


def run_cmd(
    cmd: Sequence[str], *, check: bool = True, timeout: float | None = 30.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    log.debug("run %s", " ".join(cmd))
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(cmd)}` did not finish within {timeout}s") from exc
    if check and res.returncode != 0:
        raise LabCommandError(cmd, res.returncode, res.stdout, res.stderr)
    return res


def require_root() -> None:
    """Raise LabError unless running as root with the tools the lab needs."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, BPF)")
    missing = [t for t in ("ip", "tc", "bridge", "ethtool", "sysctl") if shutil.which(t) is None]
    if missing:
        raise LabError(f"the lab needs these commands: {', '.join(missing)}")
