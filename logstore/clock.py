"""Injectable time.

Everything that depends on time (segment.ms rolls, retention, lingering, sessions, timeouts)
reads it from a :class:`Clock`, so tests drive time with :class:`ManualClock` instead of sleeping.

``time_ms`` is wall-clock time (record timestamps, retention); ``monotonic_ms`` measures
intervals. ``ManualClock`` advances both together.

A thread that waits for an amount of a clock's time (a linger, a retry backoff, a heartbeat
interval) waits on a :class:`ClockCondition`: on the real clock that is a timed wait; on a
``ManualClock`` the wait ends when the clock is advanced, so a test moves such threads on by
calling ``advance`` and nothing waits for real time that the clock does not count. How long a
call may block its caller (``flush(timeout)``, ``poll(timeout_ms)``) stays real time, so a
test on a ``ManualClock`` never hangs.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol, runtime_checkable

#: A wait on a clock that only moves when told still ends after this much real time, so a
#: waiter re-checks its deadline even if it was not registered for wake-ups (a safety net).
MANUAL_WAIT_LIMIT_S = 1.0


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
    """A clock that moves only when told to. Thread-safe.

    Conditions registered with :meth:`add_waiter` are notified after every :meth:`advance`.
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._lock = threading.Lock()
        self._now_ms = start_ms
        self._mono_ms = 0.0
        self._waiters: weakref.WeakSet[threading.Condition] = weakref.WeakSet()

    def time_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def monotonic_ms(self) -> float:
        with self._lock:
            return self._mono_ms

    def add_waiter(self, condition: threading.Condition) -> None:
        """Notify ``condition`` after every advance, for as long as it exists (held weakly)."""
        with self._lock:
            self._waiters.add(condition)

    def advance(self, ms: int) -> None:
        """Move both clocks forward by ``ms`` milliseconds, then wake the registered waiters."""
        if ms < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now_ms += ms
            self._mono_ms += ms
            waiters = list(self._waiters)
        # Notified after the time changed and without holding the clock's lock: a waiter reads
        # the time while holding its condition's lock, so it either sees the new time or is
        # already waiting when this notification comes.
        for condition in waiters:
            with condition:
                condition.notify_all()


class ClockCondition(threading.Condition):
    """A condition variable whose timed waits count ``clock``'s time.

    On a clock that moves by itself, :meth:`wait_ms` is a timed wait. On a clock that moves only
    when told (one with ``add_waiter``, such as :class:`ManualClock`) the condition registers
    for wake-ups and :meth:`wait_ms` lasts until it is notified or the clock is advanced. Rule
    for callers: read the clock while holding the lock, then wait, and re-check the deadline
    after every wake-up (a wake-up says "look again", not "the time has come").
    """

    def __init__(self, clock: Clock, lock: threading.Lock | None = None) -> None:
        super().__init__(lock)
        add_waiter = getattr(clock, "add_waiter", None)
        self._moves_by_itself = add_waiter is None
        if add_waiter is not None:
            add_waiter(self)

    def wait_ms(self, timeout_ms: float | None) -> bool:
        """Wait (holding the lock) until notified, or until about ``timeout_ms`` of the clock's
        time may have passed (None: until notified). Returns False on a timeout."""
        if timeout_ms is None:
            return self.wait()
        if self._moves_by_itself:
            return self.wait(max(0.0, timeout_ms / 1000.0))
        return self.wait(MANUAL_WAIT_LIMIT_S)


SYSTEM_CLOCK = SystemClock()
