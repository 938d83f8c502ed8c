"""CPU time and bytes written to disk, of this process and of server processes.

* CPU: ``os.times()`` of this process (all its threads, plus children it has waited for), and
  utime + stime from ``/proc/<pid>/stat`` for server processes (Redis, NATS).
* Other load: CPU seconds the whole machine spent busy (``/proc/stat``) minus the above, so
  a result says how much else ran on a shared machine while it was measured.
* Disk: ``write_bytes - cancelled_write_bytes`` from ``/proc/<pid>/io``: bytes this process
  caused to be written to the storage layer (counted when a page is dirtied, so data not yet
  written back counts too; a reaped child's counts are added to its parent's). Without
  ``/proc`` (not Linux) or permission to read a server's files, the figure is None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Usage:
    """Resources used between two readings."""

    cpu_s: float
    disk_write_bytes: int | None
    other_cpu_s: float | None = None
    wall_s: float = 0.0
    server_cpu_s: float | None = None  # the server processes' share of cpu_s (None: none)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all threads), or None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def process_write_bytes(pid: int | str = "self") -> int | None:
    """Net bytes a process has written to storage (see the module docstring), or None."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return None
    counters = dict(line.split(": ") for line in text.splitlines() if ": " in line)
    return int(counters["write_bytes"]) - int(counters["cancelled_write_bytes"])


def machine_busy_cpu_s() -> float | None:
    """CPU seconds every CPU of the machine has spent busy since boot (None if unknown)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Meter:
    """Measures :class:`Usage` of this process plus the given server processes."""

    def __init__(self, server_pids: list[int] | None = None) -> None:
        self._pids = list(server_pids or [])
        self._start: tuple[float, float, int | None, float | None, float] | None = None

    def _read(self) -> tuple[float, float, int | None, float | None, float]:
        """(own CPU, servers' CPU, bytes written, machine busy CPU, wall clock)."""
        wall = time.monotonic()
        machine = machine_busy_cpu_s()
        cpu = own_cpu_s()
        server_cpu = 0.0
        written = process_write_bytes()
        for pid in self._pids:
            server_cpu += process_cpu_s(pid) or 0.0
            server_written = process_write_bytes(pid)
            written = None if written is None or server_written is None else (
                written + server_written)
        return cpu, server_cpu, written, machine, wall

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> Usage:
        """Usage since :meth:`start`."""
        if self._start is None:
            raise RuntimeError("Meter.stop() before start()")
        cpu0, server0, written0, machine0, wall0 = self._start
        cpu1, server1, written1, machine1, wall1 = self._read()
        self._start = None
        written = None if written0 is None or written1 is None else written1 - written0
        cpu = cpu1 - cpu0 + server1 - server0
        other = None if machine0 is None or machine1 is None else max(
            0.0, machine1 - machine0 - cpu)
        return Usage(cpu_s=cpu, disk_write_bytes=written, other_cpu_s=other,
                     wall_s=wall1 - wall0,
                     server_cpu_s=server1 - server0 if self._pids else None)


def pid_listening_on(port: int) -> int | None:
    """The pid of the local process listening on TCP ``port`` (None if not found or not
    visible to this user)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "0A":  # 0A = LISTEN
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(entry.name)
        except OSError:
            continue
    return None
