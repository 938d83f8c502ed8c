"""Injectable time.

Everything that depends on time (segment.ms rolls, retention, lingering, sessions, timeouts)
reads it from a :class:`Clock`, so tests drive time with :class:`ManualClock` instead of sleeping.

``time_ms`` is wall-clock time (record timestamps, retention); ``monotonic_ms`` measures
intervals. ``ManualClock`` advances both together.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of time. Implementations are thread-safe."""

    def time_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        ...

    def monotonic_ms(self) -> float:
        """Milliseconds on a clock that never goes backwards (for intervals and deadlines)."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> float:
        return time.monotonic() * 1000.0


class ManualClock:
    """A clock that moves only when told to. Thread-safe."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._lock = threading.Lock()
        self._now_ms = start_ms
        self._mono_ms = 0.0

    def time_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def monotonic_ms(self) -> float:
        with self._lock:
            return self._mono_ms

    def advance(self, ms: int) -> None:
        """Move both clocks forward by ``ms`` milliseconds."""
        if ms < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now_ms += ms
            self._mono_ms += ms


SYSTEM_CLOCK = SystemClock()
