"""Processes the lab runs inside its namespaces (`Lab.popen`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

from xdsr.local.process import Child


class LabProcess(Child):
    """A process started inside a namespace, tracked by its lab.

    It runs in a session of its own (its pid is its process group), so the
    lab can signal it and anything it forks; the namespace sweep at close
    catches whatever escaped the group. stderr goes to an anonymous
    temporary file: it can never fill a pipe and block the process, and is
    still there to explain a failure. `cmd` is the command as given, without
    the `ip netns exec` in front.
    """

    def __init__(
        self, netns: str, cmd: Sequence[str], argv: Sequence[str], stderr_file: IO[bytes], **popen: Any
    ) -> None:
        super().__init__(cmd[0] if cmd else "?", argv, stderr=stderr_file, **popen)
        self.netns = netns
        self.cmd = list(cmd)
        self._stderr_file = stderr_file

    def stderr_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        if self._stderr_file.closed:
            return ""
        self._stderr_file.flush()
        self._stderr_file.seek(0)
        return self._stderr_file.read().decode(errors="replace")

    def close(self) -> None:
        """Release the pipes and the stderr file (after stop())."""
        self.close_pipes()
        self._stderr_file.close()

    def __repr__(self) -> str:
        return f"LabProcess(pid={self.pid}, netns={self.netns!r}, cmd={self.cmd!r}, rc={self.returncode})"
