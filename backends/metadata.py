"""The metadata store interface: topics and their configuration, consumer groups and their
committed offsets, transactional ids and producer ids (more tables come with later features:
the tiered-segment manifest, cleaner checkpoints, leases).

Every write is a compare-and-swap on a ``version`` column: a caller reads a row, then writes with
the version it read as ``expected_version``; if another writer got there first the write raises
:class:`~logstore.errors.StaleVersionError` and changes nothing.

Implementations translate their driver's exceptions into :mod:`logstore.errors` and are
thread-safe. ``SqlMetadataStore`` (SQLAlchemy Core; SQLite or PostgreSQL) is the only one today.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, TypeVar, runtime_checkable

from logstore.backends.group_records import (
    CommittedOffset,
    GroupRecord,
    GroupSnapshot,
    GroupUpdate,
)
from logstore.backends.txn_records import ProducerIdAllocator, TransactionRecord, TxnUpdate

from logstore.types import TopicPartition

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """A topic as stored: identity, partition count, config overrides and row version."""

    name: str
    topic_id: str
    partition_count: int
    configs: Mapping[str, str] = field(default_factory=dict)
    version: int = 1
    created_ms: int = 0


@runtime_checkable
class MetadataStore(Protocol):
    """Durable, shared metadata. All methods are thread-safe; writes are atomic CAS operations.

    ``url`` is the database URL with any password masked (for messages and ``describe`` output).
    A store is a context manager that closes itself on exit.
    """

    url: str

    def create_topic(
        self, name: str, partition_count: int, configs: Mapping[str, str], *, created_ms: int
    ) -> TopicRecord:
        """Insert a topic with a fresh topic id and version 1.

        Raises TopicAlreadyExistsError if the name is taken.
        """
        ...

    def get_topic(self, name: str) -> TopicRecord | None:
        """The topic, or None if it does not exist."""
        ...

    def list_topics(self) -> list[TopicRecord]:
        """Every topic, sorted by name."""
        ...

    def update_topic(
        self,
        name: str,
        *,
        expected_version: int,
        partition_count: int | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> TopicRecord:
        """Replace the partition count and/or the whole config-override map; bumps the version.

        Raises UnknownTopicOrPartitionError if the topic is gone and StaleVersionError if its
        version is not ``expected_version``.
        """
        ...

    def delete_topic(self, name: str, *, expected_version: int | None = None) -> TopicRecord:
        """Delete the topic row and return what was deleted.

        Raises UnknownTopicOrPartitionError if it does not exist, StaleVersionError if
        ``expected_version`` is given and differs.
        """
        ...

    def change_counter(self) -> int:
        """A number that increases whenever any topic is created, altered or deleted.

        Cheap to read, so caches can poll it to decide whether to reload topics.
        """
        ...

    # --- consumer groups (see logstore.backends.group_records) -----------------------------

    def update_group(
        self, group_id: str, step: Callable[[GroupSnapshot], tuple[GroupUpdate, T]]
    ) -> T:
        """Atomically read the group under its lock, apply ``step``'s update, return its result.

        ``step`` is a pure function of the snapshot (it may be called again if the transaction
        has to be retried, and may raise to abort without writing). Groups of different ids do
        not block each other on PostgreSQL.
        """
        ...

    def read_group(self, group_id: str) -> GroupSnapshot:
        """The group and its members (no lock; a consistent snapshot)."""
        ...

    def list_groups(self) -> list[GroupRecord]:
        """Every group row, sorted by group id."""
        ...

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        """Committed offsets of the group (of ``partitions`` only, if given)."""
        ...

    # --- transactions (see logstore.backends.txn_records) ------------------------------------

    def update_transaction(
        self,
        transactional_id: str,
        step: Callable[[TransactionRecord | None, ProducerIdAllocator], tuple[TxnUpdate, T]],
    ) -> T:
        """Atomically read the transactional id's record (None: unknown) under its lock, apply
        ``step``'s update, return its result.

        ``step`` is a pure function of the record, given an allocator of fresh producer ids that
        works inside the same database transaction; it may raise to abort without writing.
        Offsets in the update's ``commit_offsets`` become the groups' committed offsets in the
        same transaction. Different ids do not block each other on PostgreSQL. Raises
        InvalidArgumentError for an id that is not 1 to 255 characters.
        """
        ...

    def read_transaction(self, transactional_id: str) -> TransactionRecord | None:
        """The record of a transactional id (no lock), or None if it does not exist."""
        ...

    def list_transactions(self, states: Iterable[str] | None = None) -> list[TransactionRecord]:
        """Every transactional id's record (in ``states`` only, if given), sorted by id."""
        ...

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, by any process or host (from 1000 up)."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent; any other call after it raises IllegalStateError."""
        ...

    def __enter__(self) -> MetadataStore:
        ...

    def __exit__(self, *exc_info: object) -> None:
        ...
