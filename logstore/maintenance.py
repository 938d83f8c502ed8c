"""The background maintenance of a :class:`~logstore.embedded.Log`: one daemon thread that runs
the transaction upkeep (abort timed-out transactions, finish prepared ones, expire unused
transactional ids) every ``transaction_check_interval_ms`` and enforces retention every
``maintenance_interval_ms``, until the log's ``closed`` event is set.

A pass that fails is logged and the next one runs at its time; IllegalStateError (the log
closed under the pass) ends the thread. The passes are the Log's
(:meth:`~logstore.embedded.Log.run_transaction_maintenance`,
:meth:`~logstore.embedded.Log.run_maintenance`); the retention pass over the partitions is
:func:`enforce_retention`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from logstore.errors import IllegalStateError, InvalidArgumentError, LogstoreError
from logstore.log.partition_log import PartitionLog
from logstore.types import RetentionReport

_log = logging.getLogger("logstore")


def check_intervals(
    maintenance_interval_ms: int | None, transaction_check_interval_ms: int,
    tier_interval_ms: int | None, *, tiered: bool,
) -> None:
    """Raise InvalidArgumentError for an interval that is not positive (None turns a thread
    off). ``tier_interval_ms`` counts only for a log opened with an object store."""
    if maintenance_interval_ms is not None and (
            maintenance_interval_ms <= 0 or transaction_check_interval_ms <= 0):
        raise InvalidArgumentError("maintenance intervals must be positive or None")
    if tiered and tier_interval_ms is not None and tier_interval_ms <= 0:
        raise InvalidArgumentError("tier_interval_ms must be positive or None")


def enforce_retention(
    topics: Iterable[str],
    partition_count: Callable[[str], int],
    partition_log: Callable[[str, int], PartitionLog],
) -> list[RetentionReport]:
    """Enforce retention now on every partition of ``topics``, in order; one report each."""
    reports: list[RetentionReport] = []
    for topic in topics:
        for partition in range(partition_count(topic)):
            reports.append(partition_log(topic, partition).enforce_retention())
    return reports


class MaintenanceThread:
    """Schedules ``run_transactions`` every ``transaction_check_interval_ms`` and
    ``run_retention`` every ``maintenance_interval_ms`` on a daemon thread (started by
    :meth:`start`) until ``closed`` is set."""

    def __init__(
        self,
        *,
        maintenance_interval_ms: int,
        transaction_check_interval_ms: int,
        run_retention: Callable[[], object],
        run_transactions: Callable[[], object],
        closed: threading.Event,
    ) -> None:
        check_intervals(maintenance_interval_ms, transaction_check_interval_ms, None,
                        tiered=False)
        self._retention_s = maintenance_interval_ms / 1000.0
        self._transactions_s = transaction_check_interval_ms / 1000.0
        self._run_retention = run_retention
        self._run_transactions = run_transactions
        self._closed = closed
        self._thread = threading.Thread(target=self._loop, name="logstore-maintenance",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to finish its pass (``closed`` must be set)."""
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        next_retention = time.monotonic() + self._retention_s
        while not self._closed.wait(
            min(self._transactions_s, max(0.0, next_retention - time.monotonic()))
        ):
            try:
                self._run_transactions()
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self._retention_s
                    self._run_retention()
            except IllegalStateError:
                return
            except LogstoreError as exc:
                _log.warning("maintenance pass failed: %s", exc)
            except Exception:  # noqa: BLE001 - keep the thread alive; the next pass may succeed
                _log.exception("maintenance pass failed unexpectedly")
