"""The broker's registration in the metadata store: who it is, where clients reach it, and a
session it keeps alive (``logstore brokers list`` shows them; replication will elect leaders
among the live ones).

:class:`RegistrationKeeper` runs on the broker's event loop. It registers the broker (its id,
advertised listener and rack) and renews the session every third of
``broker.session.timeout.ms``; every store call runs on the storage threads. Serving does not
wait for it: a broker restarted right after a crash finds its previous incarnation's session
still alive (DuplicateResourceError), logs that once and retries every second until that
session lapses, as a Kafka broker keeps retrying its registration. If a renewal finds the
registration replaced (another process registered the same id after this one's session
lapsed, e.g. while it was paused), it logs an error and registers again once the other
lapses. A metadata store that cannot be reached is logged and retried at the next tick. On a
clean stop the session is ended, so the id is free at once (the row stays, listed as dead).

Thread-safety: one keeper per broker, used on its event loop only.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from logstore.backends.broker_records import BrokerRegistration
from logstore.backends.metadata import MetadataStore
from logstore.errors import LogstoreError, StaleVersionError

_log = logging.getLogger("logstore.broker")

Run = Callable[..., Awaitable[Any]]
"""``await run(fn, *args)``: ``fn(*args)`` on the storage threads."""

#: How often a broker that could not register tries again.
RETRY_INTERVAL_MS = 1_000


class RegistrationKeeper:
    """Keeps one broker registered (see the module docstring)."""

    def __init__(self, store: MetadataStore, run: Run, *, broker_id: int, rack: str | None,
                 session_timeout_ms: int) -> None:
        self._store = store
        self._run = run
        self._broker_id = broker_id
        self._rack = rack
        self._session_timeout_ms = session_timeout_ms
        self.registration: BrokerRegistration | None = None
        self._warned: type[LogstoreError] | None = None

    async def keep(self, listener: tuple[str, int], stopping: asyncio.Event) -> None:
        """Register and renew until ``stopping`` is set; then unregister."""
        renew_s = self._session_timeout_ms / 3 / 1000
        try:
            while not stopping.is_set():
                await self._tick(listener)
                wait_s = renew_s if self.registration is not None else RETRY_INTERVAL_MS / 1000
                try:
                    await asyncio.wait_for(stopping.wait(), min(wait_s, renew_s))
                except TimeoutError:
                    pass
        finally:
            await self._unregister()

    async def _tick(self, listener: tuple[str, int]) -> None:
        host, port = listener
        try:
            if self.registration is None:
                self.registration = await self._run(functools.partial(
                    self._store.register_broker, self._broker_id, host, port, self._rack,
                    session_timeout_ms=self._session_timeout_ms))
                _log.info("broker %d registered (broker epoch %d)", self._broker_id,
                          self.registration.epoch)
            else:
                self.registration = await self._run(functools.partial(
                    self._store.renew_broker_session, self.registration,
                    session_timeout_ms=self._session_timeout_ms))
            self._warned = None
        except StaleVersionError as exc:
            _log.error("broker %d: %s", self._broker_id, exc)
            self.registration = None
        except LogstoreError as exc:  # DuplicateResourceError: an earlier session lives on
            if self._warned is not type(exc):  # once per kind of trouble, not every second
                _log.warning("broker %d could not register or renew its session (retrying): "
                             "%s", self._broker_id, exc)
                self._warned = type(exc)

    async def _unregister(self) -> None:
        registration, self.registration = self.registration, None
        if registration is None:
            return
        try:
            await self._run(self._store.unregister_broker, registration)
        except LogstoreError as exc:
            _log.warning("broker %d could not unregister (its session lapses in %d ms): %s",
                         self._broker_id, self._session_timeout_ms, exc)
