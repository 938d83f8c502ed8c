"""A group-member worker process seen through the lines it prints (the protocol of
``tests/workers/group_member.py`` and ``tests/workers/ck_group_member.py``: one event per line,
``<kind> <time> ...``; ``A``/``V``/``L`` lines carry the partitions assigned, revoked or lost,
comma-separated, ``-`` for none; ``R`` a record; ``C`` a commit). A thread collects the lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

OWNERSHIP_EVENTS = ("A", "V", "L")


@dataclass
class MemberProcess:
    """A member process and the lines it printed so far; ``ended_at`` is when it stopped or
    was killed (monotonic time)."""

    name: str
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ended_at: float | None = None

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def events(self, kind: str) -> list[list[str]]:
        """The lines of one kind, split into fields."""
        return [line.split(" ") for line in list(self.lines) if line.startswith(kind + " ")]

    def owned(self) -> set[int]:
        """The partitions it owns after the events printed so far."""
        owned: set[int] = set()
        for kind, _, parts in (e for e in (line.split(" ") for line in list(self.lines))
                               if e[0] in OWNERSHIP_EVENTS and len(e) == 3):
            numbers = {int(p) for p in parts.split(",") if p not in ("", "-")}
            owned = owned | numbers if kind == "A" else owned - numbers
        return owned

    def stop(self) -> None:
        """Ask it to stop (``stop`` on stdin) and wait for a clean exit."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read() if self.proc.stderr else ""
        self._reader.join(timeout=10)
        self.ended_at = time.monotonic()

    def kill(self) -> None:
        """SIGKILL; its ownership ends now."""
        self.ended_at = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
