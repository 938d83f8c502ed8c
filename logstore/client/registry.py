"""The clients of one log, so that closing the log closes them.

Why producers are held through their sender: a producer's thread (``logstore-sender-*``) runs
the sender, which never refers back to the :class:`~logstore.client.producer.Producer`. So an
application that drops a producer without closing it lets the Producer object be collected,
while the thread, its queue and its retries live on. A registry of weak references to the
Producer objects (what the log used to keep) lost such producers, and their threads outlived
``Log.close()``. Here the registry holds each producer's sender strongly until its thread has
ended, and the producer's finalizer starts closing the sender: the dropped producer's records
are still sent, then its thread ends on its own. ``Log.close()`` closes every sender still
running, kept or dropped, in bounded time.

Consumers are held weakly: a consumer in a group is kept alive by its heartbeat thread until it
is closed, so it is found here; one without a group has no thread, and once dropped nothing of
it is left to close.

Thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from logstore.errors import IllegalStateError, LogstoreTimeoutError

if TYPE_CHECKING:
    from logstore.client.consumer import Consumer
    from logstore.client.sender import Sender

_log = logging.getLogger("logstore")

#: How long ``Log.close()`` lets its producers send what they hold, in all (real time).
DEFAULT_CLIENT_CLOSE_TIMEOUT_MS = 30_000
_PRUNE_MIN = 64  # senders kept before the first sweep of those that have ended


class ClientRegistry:
    """Producers (through their senders) and consumers of one log (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._senders: set[Sender] = set()
        self._consumers: weakref.WeakSet[Consumer] = weakref.WeakSet()
        self._closed = False
        self._prune_at = _PRUNE_MIN

    def add_producer(self, sender: Sender) -> None:
        """Track a new producer's sender. Raises IllegalStateError once the log is closing."""
        with self._lock:
            self._ensure_open()
            if len(self._senders) >= self._prune_at:
                # Closed producers leave their senders here: sweep them now and then, so a
                # process making many short-lived producers holds only the live ones.
                self._senders = {s for s in self._senders if not s.stopped}
                self._prune_at = max(_PRUNE_MIN, 2 * len(self._senders))
            self._senders.add(sender)

    def add_consumer(self, consumer: Consumer) -> None:
        """Track a new consumer. Raises IllegalStateError once the log is closing."""
        with self._lock:
            self._ensure_open()
            self._consumers.add(consumer)

    def close_all(self, timeout_ms: float = DEFAULT_CLIENT_CLOSE_TIMEOUT_MS) -> None:
        """Close every client. Producers, kept or dropped, send what they hold, all at once,
        for up to ``timeout_ms`` of real time in all; what is left then fails with a
        LogstoreTimeoutError saying so. Then consumers close (committing with auto-commit,
        leaving their groups). Later registrations raise IllegalStateError. Idempotent."""
        with self._lock:
            self._closed = True
            senders = list(self._senders)
            self._senders.clear()
            consumers = list(self._consumers)
        for sender in senders:
            sender.begin_close()  # all of them flush at once
        deadline = time.monotonic() + timeout_ms / 1000.0
        error = LogstoreTimeoutError(
            f"the log was closed before this record was sent (its producers had "
            f"{timeout_ms:g} ms to send what they held)")
        for sender in senders:
            sender.close(max(0.0, deadline - time.monotonic()), error=error)
        for consumer in consumers:
            try:
                consumer.close()
            except Exception:  # noqa: BLE001 - one failing consumer must not keep the others open
                _log.warning("closing %s with its log failed", consumer.client_id, exc_info=True)

    def _ensure_open(self) -> None:
        if self._closed:
            raise IllegalStateError("the log is closed")
