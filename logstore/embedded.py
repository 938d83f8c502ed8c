"""The embedded API: ``logstore.open(path)`` returns a :class:`Log`, a directory that is a log.

A ``Log`` ties together the metadata store (topics and configs; SQLite in ``<path>/metadata.db``
unless ``metadata_url`` names another database), the local partition logs under
``<path>/topics``, the append notifier that wakes consumers, and a background maintenance thread
that enforces retention every ``maintenance_interval_ms`` and aborts timed-out transactions
(and finishes prepared ones) every ``transaction_check_interval_ms``; opened with an object
store, also the tiered storage (``logstore.tier.service``) and its tiering thread.

Several processes may open the same directory at once; each gets its own ``Log``. A ``Log`` is
thread-safe and a context manager; closing it closes the producers and consumers it made.

``Log`` is a facade: its methods check that it is open and delegate to collaborators in the
modules beside this one: ``storage_stack`` (opening and closing the pieces above), ``admin``
(topics), ``checkup`` (check/repair), ``group_admin``, ``transaction_admin``, ``raw_access``
(fetch/append/delete_records) and ``maintenance`` (the retention pass and the background thread).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from logstore import raw_access
from logstore.admin import validate_topic_name
from logstore.backends.metadata import MetadataStore
from logstore.checkup import Checkup, PartitionRepair
from logstore.client.consumer import Consumer
from logstore.client.producer import Producer
from logstore.client.registry import DEFAULT_CLIENT_CLOSE_TIMEOUT_MS, ClientRegistry
from logstore.clock import SYSTEM_CLOCK, Clock
from logstore.config import TopicConfig
from logstore.coordinator.group_coordinator import GroupCoordinator
from logstore.coordinator.transaction_coordinator import TransactionCoordinator
from logstore.coordinator.txn_state import DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS
from logstore.errors import IllegalStateError, InvalidArgumentError
from logstore.group_admin import GroupAdmin
from logstore.log.check import PartitionCheck
from logstore.log.partition_log import PartitionLog
from logstore.maintenance import MaintenanceThread, check_intervals, enforce_retention
from logstore.storage_stack import StorageStack
from logstore.storage_stack import (
    default_metadata_url as default_metadata_url,  # public here: the CLI's `db upgrade` uses it
)
from logstore.transaction_admin import TransactionAdmin, write_markers
from logstore.types import (
    AppendResult,
    FetchResult,
    GroupDescription,
    GroupListing,
    OffsetAndMetadata,
    PartitionLag,
    RetentionReport,
    TopicDescription,
    TopicPartition,
    TransactionDescription,
)

if TYPE_CHECKING:
    from logstore.backends.object_store import ObjectStore
    from logstore.compaction.report import CompactionReport
    from logstore.tier.orphans import OrphanReport
    from logstore.tier.status import PartitionTierStatus
    from logstore.tier.tierer import TierReport

DEFAULT_MAINTENANCE_INTERVAL_MS = 300_000
DEFAULT_TIER_INTERVAL_MS = 5_000
#: Bytes of remote segments cached in memory per Log (``remote_cache_bytes``).
DEFAULT_REMOTE_CACHE_BYTES = 64 * 1024 * 1024
DEFAULT_TRANSACTION_CHECK_INTERVAL_MS = 10_000


def open(
    path: str | os.PathLike[str],
    *,
    metadata_url: str | None = None,
    clock: Clock | None = None,
    maintenance_interval_ms: int | None = DEFAULT_MAINTENANCE_INTERVAL_MS,
    transaction_check_interval_ms: int = DEFAULT_TRANSACTION_CHECK_INTERVAL_MS,
    transactional_id_expiration_ms: int = DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS,
    metadata_max_age_ms: int = 1000,
    object_store_url: str | None = None,
    object_store: ObjectStore | None = None,
    remote_cache_bytes: int = DEFAULT_REMOTE_CACHE_BYTES,
    tier_interval_ms: int | None = DEFAULT_TIER_INTERVAL_MS,
    max_open_files: int | None = None,
) -> Log:
    """Open (creating if needed) the log stored in directory ``path``.

    ``metadata_url``: a SQLAlchemy URL of the metadata database (default: SQLite in
    ``<path>/metadata.db``; ``postgresql+psycopg://...`` when brokers span hosts).
    ``maintenance_interval_ms``: how often the background thread enforces retention
    (None: no background thread; call :meth:`Log.run_maintenance` and
    :meth:`Log.run_transaction_maintenance` yourself).
    ``transaction_check_interval_ms``: how often it aborts timed-out transactions and finishes
    prepared ones.
    ``transactional_id_expiration_ms``: a transactional id with no transaction in progress that
    stays unused this long is removed by the transaction maintenance (Kafka's
    ``transactional.id.expiration.ms``, default 7 days); its next producer starts afresh.
    ``metadata_max_age_ms``: how stale this process's view of topic configs may get.

    Tiered storage (topics with ``remote.storage.enable=true``): ``object_store_url`` names the
    object store (``s3://bucket/prefix?endpoint_url=...``, ``file:///path``, ``memory://name``;
    see :func:`logstore.backends.object_store.open_object_store`), or pass an open
    ``object_store`` (it stays the caller's to close). ``remote_cache_bytes`` bounds the cache
    of remote segment bytes (Kafka's ``remote.cache.bytes`` role; 0 turns it off).
    ``tier_interval_ms``: how often a background thread copies sealed segments and applies
    local retention (None: call :meth:`Log.tier` yourself). A store that cannot be used at all
    (no such bucket, access denied) fails here with ObjectStoreAccessError.

    ``max_open_files``: how many file descriptors this log's partitions may hold open (idle
    ones close in LRU order and reopen on use). None (the default) shares one budget among all
    logs of the process: three quarters of ``ulimit -n``.
    """
    return Log(
        path,
        metadata_url=metadata_url,
        clock=clock,
        maintenance_interval_ms=maintenance_interval_ms,
        transaction_check_interval_ms=transaction_check_interval_ms,
        transactional_id_expiration_ms=transactional_id_expiration_ms,
        metadata_max_age_ms=metadata_max_age_ms,
        object_store_url=object_store_url,
        object_store=object_store,
        remote_cache_bytes=remote_cache_bytes,
        tier_interval_ms=tier_interval_ms,
        max_open_files=max_open_files,
    )


class Log:
    """A log directory: topics, producers, consumers, fetches and maintenance."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        metadata_url: str | None = None,
        clock: Clock | None = None,
        maintenance_interval_ms: int | None = DEFAULT_MAINTENANCE_INTERVAL_MS,
        transaction_check_interval_ms: int = DEFAULT_TRANSACTION_CHECK_INTERVAL_MS,
        transactional_id_expiration_ms: int = DEFAULT_TRANSACTIONAL_ID_EXPIRATION_MS,
        metadata_max_age_ms: int = 1000,
        object_store_url: str | None = None,
        object_store: ObjectStore | None = None,
        remote_cache_bytes: int = DEFAULT_REMOTE_CACHE_BYTES,
        tier_interval_ms: int | None = DEFAULT_TIER_INTERVAL_MS,
        max_open_files: int | None = None,
    ) -> None:
        check_intervals(maintenance_interval_ms, transaction_check_interval_ms, tier_interval_ms,
                        tiered=object_store_url is not None or object_store is not None)
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._stack = StorageStack.open(
            path, metadata_url=metadata_url, clock=self.clock,
            object_store_url=object_store_url, object_store=object_store,
            remote_cache_bytes=remote_cache_bytes, max_open_files=max_open_files,
            metadata_max_age_ms=metadata_max_age_ms)
        self.path, self.metadata_url = self._stack.path, self._stack.metadata_url
        # The pieces by name (tests and tools reach for some of them, e.g. _manager.budget).
        self._store, self._tiered = self._stack.store, self._stack.tiered
        self._manager, self._cache, self._admin = (
            self._stack.manager, self._stack.cache, self._stack.admin)
        self.notifier = self._stack.notifier
        self.clients = ClientRegistry()
        self._closed = threading.Event()
        self._closing = False
        self._close_lock = threading.Lock()
        try:
            self._checkup = Checkup(self._store, self._cache, self._manager, self.clock)
            self.group_coordinator = GroupCoordinator(self._store, self.clock)
            self.transaction_coordinator = TransactionCoordinator(
                self._store, self.clock, self._write_markers,
                transactional_id_expiration_ms=transactional_id_expiration_ms)
            self._transactions = TransactionAdmin(self.transaction_coordinator)
            self._groups = GroupAdmin(
                self.group_coordinator, self.clock, self.partition_log,
                lambda topic: self.topic_info(topic)[0],
            )
            self._transactions.recover()
        except BaseException:  # e.g. a bad transactional_id_expiration_ms
            self._stack.close()
            raise
        self._maintenance: MaintenanceThread | None = None
        if maintenance_interval_ms is not None:
            self._maintenance = MaintenanceThread(
                maintenance_interval_ms=maintenance_interval_ms,
                transaction_check_interval_ms=transaction_check_interval_ms,
                run_retention=lambda: self.run_maintenance(),
                run_transactions=lambda: self.run_transaction_maintenance(),
                closed=self._closed,
            )
            self._maintenance.start()
        if self._tiered is not None and tier_interval_ms is not None:
            self._tiered.start(self, tier_interval_ms, self._closed)

    # --- topics ------------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None,
        *, validate_only: bool = False,
    ) -> TopicDescription:
        """Create a topic (``validate_only``: only check). Raises TopicAlreadyExistsError,
        InvalidTopicError, InvalidPartitionsError or InvalidConfigurationError."""
        self._ensure_open()
        return self._admin.create_topic(name, partitions, config, validate_only=validate_only)

    def list_topics(self) -> list[str]:
        """Names of all topics, sorted."""
        self._ensure_open()
        return self._admin.list_topics()

    def describe_topic(self, name: str) -> TopicDescription:
        """Identity, effective config and per-partition offsets and sizes of a topic."""
        self._ensure_open()
        return self._admin.describe_topic(name)

    def alter_topic_config(self, name: str, config: Mapping[str, Any], *,
                           validate_only: bool = False) -> TopicDescription:
        """Set config keys of a topic (a value of None restores the default)."""
        self._ensure_open()
        return self._admin.alter_topic_config(name, config, validate_only=validate_only)

    def update_topic_config(
        self, name: str, edit: Callable[[Mapping[str, str]], Mapping[str, Any]], *,
        validate_only: bool = False,
    ) -> TopicDescription:
        """Replace a topic's config overrides with ``edit(current overrides)`` atomically
        (``edit`` may be called again if the topic changed meanwhile)."""
        self._ensure_open()
        return self._admin.update_topic_config(name, edit, validate_only=validate_only)

    def create_partitions(self, name: str, total: int, *,
                          validate_only: bool = False) -> TopicDescription:
        """Grow a topic to ``total`` partitions (``validate_only``: only check)."""
        self._ensure_open()
        return self._admin.create_partitions(name, total, validate_only=validate_only)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its records."""
        self._ensure_open()
        self._admin.delete_topic(name)

    # --- checking and repairing the data directory ------------------------------------------

    def check(
        self,
        topic: str | None = None,
        partition: int | None = None,
        *,
        deep: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> list[PartitionCheck]:
        """Verify the files of every partition (or of ``topic``, or one ``partition``): the
        segment list against the files, every segment's SQLite integrity and every batch's
        CRC, the chain of segments, the log end against its checkpoint; and report topic
        directories the metadata store does not know. Changes nothing. ``progress`` gets the
        bytes of every batch read. See :mod:`logstore.log.check`."""
        self._ensure_open()
        return self._checkup.check(topic, partition, deep=deep, progress=progress)

    def repair(
        self, topic: str, partition: int | None = None, *, action: str, dry_run: bool = False
    ) -> list[PartitionRepair]:
        """Repair the damaged partitions of ``topic`` (or one ``partition``) as the operator
        chooses: ``action="adopt"`` keeps what is readable and never reuses an offset (what is
        lost becomes a gap), ``"truncate"`` cuts at the first damage and new records reuse the
        offsets from there. ``dry_run`` only plans. Stop the partition's writers first. See
        :mod:`logstore.log.repair`."""
        self._ensure_open()
        return self._checkup.repair(topic, partition, action=action, dry_run=dry_run)

    # --- consumer groups ---------------------------------------------------------------------

    def list_groups(self) -> list[GroupListing]:
        """Every consumer group with its state and member count."""
        self._ensure_open()
        return self._groups.list_groups()

    def describe_group(self, group_id: str) -> GroupDescription:
        """State, generation, protocol and members (with their assignments) of a group."""
        self._ensure_open()
        return self._groups.describe_group(group_id)

    def group_lag(self, group_id: str) -> list[PartitionLag]:
        """Per partition: the group's committed offset, the log end offset and the lag."""
        self._ensure_open()
        return self._groups.group_lag(group_id)

    def committed_offsets(self, group_id: str) -> dict[TopicPartition, OffsetAndMetadata]:
        """Every committed offset of a group ({} for a group that does not exist)."""
        self._ensure_open()
        return {
            tp: OffsetAndMetadata(c.offset, c.metadata, c.leader_epoch)
            for tp, c in self.group_coordinator.fetch_offsets(group_id).items()
        }

    def alter_group_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, OffsetAndMetadata | int]
    ) -> None:
        """Set a group's committed offsets (refused while it has live members)."""
        self._ensure_open()
        self._groups.alter_group_offsets(group_id, offsets)

    def delete_group(self, group_id: str) -> None:
        """Delete a group and its committed offsets (only when it has no live members)."""
        self._ensure_open()
        self._groups.delete_group(group_id)

    def plan_group_offset_reset(
        self, group_id: str, topic: str, *, mode: str, value: int = 0,
        partitions: list[int] | None = None,
    ) -> dict[TopicPartition, int]:
        """Target offsets of a reset, like kafka-consumer-groups --reset-offsets (not applied:
        pass the result to :meth:`alter_group_offsets`)."""
        self._ensure_open()
        return self._groups.plan_offset_reset(group_id, topic, partitions=partitions, mode=mode,
                                              value=value)

    # --- transactions (admin) -----------------------------------------------------------------

    def list_transactions(self) -> list[TransactionDescription]:
        """Every transactional id with its state (like kafka-transactions list)."""
        self._ensure_open()
        return self._transactions.list_transactions()

    def describe_transaction(self, transactional_id: str) -> TransactionDescription:
        """One transactional id: identity, state, open transaction's partitions and offsets.
        Raises TransactionalIdNotFoundError."""
        self._ensure_open()
        return self._transactions.describe_transaction(transactional_id)

    def abort_transaction(self, transactional_id: str) -> TransactionDescription:
        """Abort a hanging transaction now (its producer is fenced until it aborts too);
        nothing happens to a transactional id without an open transaction."""
        self._ensure_open()
        return self._transactions.abort_transaction(transactional_id)

    def _write_markers(
        self, partitions: list[TopicPartition], producer_id: int, epoch: int, commit: bool,
        coordinator_epoch: int,
    ) -> None:
        """The transaction coordinator's marker writer (see
        :func:`logstore.transaction_admin.write_markers`)."""
        write_markers(self._admin.partition_log, self.clock, partitions, producer_id, epoch,
                      commit, coordinator_epoch)

    # --- clients -----------------------------------------------------------------------------

    def producer(self, **options: Any) -> Producer:
        """A new :class:`~logstore.client.producer.Producer` (options as its constructor)."""
        self._ensure_accepting_clients()
        return Producer(self, **options)  # it registers with self.clients

    def consumer(self, **options: Any) -> Consumer:
        """A new :class:`~logstore.client.consumer.Consumer` (options as its constructor)."""
        self._ensure_accepting_clients()
        return Consumer(self, **options)  # it registers with self.clients

    # --- raw access --------------------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_bytes: int = 1 << 20,
        isolation_level: str = "read_uncommitted",
    ) -> FetchResult:
        """Raw RecordBatch v2 bytes from ``offset`` (whole batches; at least one if any exists,
        even past ``max_bytes``), with the partition's high watermark, last stable offset and
        log start offset. With ``read_committed`` the bytes end at the last stable offset and
        ``aborted_transactions`` lists (producer id, first offset) of the transactions aborted
        in the range, whose batches a reader must drop (as in Kafka's fetch response).

        Raises OffsetOutOfRangeError when ``offset`` is outside [log start, log end].
        """
        self._ensure_open()
        return raw_access.fetch(self.partition_log, topic, partition, offset,
                                max_bytes=max_bytes, isolation_level=isolation_level)

    def append(self, topic: str, partition: int, batch: bytes) -> AppendResult:
        """Append one encoded RecordBatch v2 (validated record by record) to a partition."""
        self._ensure_open()
        return raw_access.append(self.partition_log, topic, partition, batch)

    def delete_records(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Advance log start offsets (offset -1 means the high watermark); return the new ones."""
        self._ensure_open()
        return raw_access.delete_records(self.partition_log, offsets)

    @property
    def metadata(self) -> MetadataStore:
        """The metadata store (for tools such as the compaction job)."""
        self._ensure_open()
        return self._store

    def partition_log(self, topic: str, partition: int) -> PartitionLog:
        """The storage-level log of one partition (for tools and advanced use)."""
        self._ensure_open()
        validate_topic_name(topic)
        return self._admin.partition_log(topic, partition)

    # --- ClientAccess ------------------------------------------------------------------------

    def topic_info(self, topic: str) -> tuple[int, TopicConfig]:
        self._ensure_open()
        if not isinstance(topic, str):
            raise InvalidArgumentError(f"topic must be a str, got {type(topic).__name__}")
        cached = self._cache.require(topic)
        return cached.partition_count, cached.config

    def topics(self) -> list[str]:
        return self.list_topics()

    def topic_id(self, topic: str) -> str:
        self._ensure_open()
        return self._cache.require(topic).topic_id

    # --- maintenance -------------------------------------------------------------------------

    def run_maintenance(self, topic: str | None = None) -> list[RetentionReport]:
        """Enforce retention now on every partition (or those of ``topic``)."""
        self._ensure_open()
        names = [topic] if topic is not None else self.list_topics()
        return enforce_retention(names, lambda name: self.topic_info(name)[0], self.partition_log)

    def run_transaction_maintenance(self) -> list[str]:
        """Abort transactions open past their timeout, finish prepared ones (a producer
        that crashed mid-commit) and remove transactional ids unused for
        ``transactional_id_expiration_ms``; returns the transactional ids aborted."""
        self._ensure_open()
        return self._transactions.run_maintenance()

    def compact(
        self,
        topic: str | None = None,
        partition: int | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        **options: Any,
    ) -> CompactionReport:
        """Run the log cleaner once over the due partitions of every compacted topic (or of
        ``topic``, or of one of its partitions); ``force`` cleans whatever is dirty. See
        :func:`logstore.compaction.job.compact` for ``options``."""
        self._ensure_open()
        # The cleaner sits above the core (cli -> compaction -> core); this convenience is the
        # one upward reference, imported late so the core never loads it otherwise.
        from logstore.compaction.job import compact

        return compact(self, topic, partition, dry_run=dry_run, force=force, **options)

    # --- tiered storage ------------------------------------------------------------------------

    @property
    def object_store(self) -> ObjectStore | None:
        """The object store remote segments go to (None: opened without one)."""
        return None if self._tiered is None else self._tiered.object_store

    def tier(
        self,
        topic: str | None = None,
        *,
        progress: Callable[[int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> TierReport:
        """Copy the sealed segments of every remote-storage topic (or of ``topic``) to the
        object store now, then apply local retention. See :mod:`logstore.tier.tierer`.
        Raises RemoteStorageError if the log was opened without an object store."""
        self._ensure_open()
        return self._stack.require_tiered().tier(self, topic, progress=progress, stop=stop)

    def tier_pending_bytes(self, topic: str | None = None) -> int:
        """Bytes of sealed segments waiting to be tiered (for progress bars and lag)."""
        self._ensure_open()
        return self._stack.require_tiered().tierer(self).pending_bytes(topic)

    def tier_status(self, topic: str | None = None) -> list[PartitionTierStatus]:
        """Per partition: local and remote offset ranges, bytes, objects and tierer lag
        (works without an object store: it reads the manifest and local segments)."""
        self._ensure_open()
        from logstore.tier.status import tier_status

        return tier_status(self, topic)

    def clean_remote_orphans(
        self, *, grace_ms: int | None = None, dry_run: bool = False
    ) -> OrphanReport:
        """Remove what crashed tierers and deleters left in the object store (see
        :mod:`logstore.tier.orphans`); nothing younger than ``grace_ms`` (default 1 h)."""
        self._ensure_open()
        return self._stack.require_tiered().clean_orphans(grace_ms=grace_ms, dry_run=dry_run)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self, *, client_timeout_ms: float = DEFAULT_CLIENT_CLOSE_TIMEOUT_MS) -> None:
        """Close clients made by this log, partition logs and the metadata store. Idempotent.

        Producers, also those never closed or dropped, first send what they hold, for up to
        ``client_timeout_ms`` (real time, for all of them together); records still unsent then
        fail with LogstoreTimeoutError."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True  # no new clients from here on
        # Clients first: a producer's last batches still need the partition logs.
        self.clients.close_all(client_timeout_ms)
        self._closed.set()
        if self._maintenance is not None:
            self._maintenance.join(timeout=30)
        self._stack.close()  # the tiering thread, partition logs, ..., the metadata store

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _ensure_open(self) -> None:
        if self._closed.is_set():
            raise IllegalStateError("the log is closed")

    def _ensure_accepting_clients(self) -> None:
        with self._close_lock:
            if self._closing:
                raise IllegalStateError("the log is closed")

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<logstore.Log {self.path}>"
