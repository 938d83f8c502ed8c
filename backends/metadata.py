"""The metadata store interface: topics and their configuration, consumer groups and their
committed offsets, transactional ids and producer ids, named leases, the log cleaner's
checkpoints, the tiered-segment manifest (which remote segments hold which offsets; see
:mod:`logstore.backends.manifest_records`), and the broker's users (SCRAM credentials) and ACLs
(see :mod:`logstore.backends.security_records`).

Every write is a compare-and-swap on a ``version`` column: a caller reads a row, then writes with
the version it read as ``expected_version``; if another writer got there first the write raises
:class:`~logstore.errors.StaleVersionError` and changes nothing.

Leases are the exception to version CAS in the interface: a :class:`Lease` is fenced by its
``epoch`` instead (the store still compare-and-swaps rows internally), see
:mod:`logstore.backends.cleaner_records`.

Implementations translate their driver's exceptions into :mod:`logstore.errors` and are
thread-safe. ``SqlMetadataStore`` (SQLAlchemy Core; SQLite or PostgreSQL) is the only one today.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from logstore.backends.broker_records import BrokerRegistration
from logstore.backends.cleaner_records import CleanerCheckpoint, Lease
from logstore.backends.group_records import (
    CommittedOffset,
    GroupRecord,
    GroupSnapshot,
    GroupUpdate,
)
from logstore.backends.manifest_records import RemoteSegment
from logstore.backends.security_records import (
    AclBinding,
    AclFilter,
    ScramCredential,
    ScramMechanism,
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
        self, name: str, partition_count: int, configs: Mapping[str, str], *, created_ms: int,
        topic_id: str | None = None,
    ) -> TopicRecord:
        """Insert a topic with a fresh topic id (or ``topic_id``: adopting a topic directory
        whose metadata was lost) and version 1.

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
        """Delete the topic row, and its cleaner checkpoints and manifest rows (remote segments;
        their objects become orphans) in the same transaction; return what was deleted.

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

    def list_transactions(
        self, states: Iterable[str] | None = None, *, updated_before_ms: int | None = None
    ) -> list[TransactionRecord]:
        """Every transactional id's record (in ``states`` only, if given; last written before
        ``updated_before_ms`` only, if given), sorted by id."""
        ...

    def delete_transaction(
        self, transactional_id: str, *, expected_version: int
    ) -> TransactionRecord:
        """Delete the record of a transactional id (the coordinator expires ids unused for
        ``transactional.id.expiration.ms``) and return what was deleted.

        A compare-and-swap under the id's lock (the lock :meth:`update_transaction` takes): it
        deletes only the row at ``expected_version``, so an id that a producer wrote since it
        was read (an InitProducerId, a new transaction) is never deleted from under it. Raises
        (retriable) StaleVersionError, with nothing deleted, if the row is at another version,
        TransactionalIdNotFoundError if there is no row, InvalidArgumentError for a bad id.
        """
        ...

    def cluster_id(self, new_id: Callable[[], str]) -> str:
        """The cluster id every broker of this store reports; the first call stores
        ``new_id()`` (racing callers agree on one)."""
        ...

    def allocate_producer_id(self) -> int:
        """A producer id never handed out before, by any process or host (from 1000 up)."""
        ...

    # --- leases and cleaner checkpoints (see logstore.backends.cleaner_records) ---------------

    def acquire_lease(
        self, name: str, holder: str, *, now_ms: int, duration_ms: int
    ) -> Lease | None:
        """Take the lease ``name`` for ``holder`` until ``now_ms + duration_ms``, or return None
        if another holder holds it unexpired (``expires_ms > now_ms``).

        A lease that is absent, released or expired is taken with the next epoch (1 for a name
        never leased before). If ``holder`` itself still holds it unexpired, this is a
        re-acquire: same epoch and ``acquired_ms``, ``expires_ms`` extended as by
        :meth:`renew_lease`. So a holder string must name one incarnation of one worker.
        Atomic across threads, processes and hosts: of concurrent acquirers at most one gets a
        lease for a given epoch. Raises InvalidArgumentError for a name or holder that is not 1
        to 255 characters, a negative ``now_ms`` or a ``duration_ms`` below 1, and (retriable)
        StaleVersionError if the row kept changing under it.
        """
        ...

    def renew_lease(self, lease: Lease, *, now_ms: int, duration_ms: int) -> Lease:
        """Extend the lease to ``now_ms + duration_ms`` (same epoch) and return it as stored.

        Works on an expired lease nobody took over yet. Raises LeaseLostError if the lease row
        no longer has ``lease``'s holder and epoch (taken over, released or re-acquired after
        expiry).
        """
        ...

    def release_lease(self, lease: Lease) -> None:
        """Release the lease (it becomes free at once; the next acquisition gets epoch + 1).

        Idempotent, and does nothing if the lease was already lost.
        """
        ...

    def read_lease(self, name: str) -> Lease | None:
        """The lease as held (possibly expired), or None if it was never taken or is released."""
        ...

    def list_leases(self, prefix: str = "") -> list[Lease]:
        """Every held lease (possibly expired) whose name starts with ``prefix``, by name."""
        ...

    def cleaner_checkpoints(self, topic_id: str) -> dict[int, CleanerCheckpoint]:
        """The cleaner checkpoints of a topic incarnation, by partition (empty if none)."""
        ...

    def set_cleaner_checkpoint(
        self,
        topic_id: str,
        partition: int,
        offset: int,
        *,
        updated_ms: int,
        lease: Lease | None = None,
        delete_horizon_ms: int | None = None,
    ) -> CleanerCheckpoint:
        """Write (insert or replace) the cleaner checkpoint of a partition, with the earliest
        delete horizon the cleaner left in its log (None: none), and return it.

        With ``lease``, the lease row's holder and epoch are checked in the same transaction
        and LeaseLostError is raised, with nothing written, if they no longer match. Raises
        UnknownTopicOrPartitionError if no topic has ``topic_id`` or it has no such partition
        (so no checkpoint outlives its topic: :meth:`delete_topic` deletes them), and
        InvalidArgumentError for a negative partition, offset or ``updated_ms``.
        """
        ...

    # --- the tiered-segment manifest (see logstore.backends.manifest_records) ----------------

    def begin_remote_copy(
        self, segment: RemoteSegment, *, lease: Lease | None = None
    ) -> RemoteSegment:
        """Insert ``segment`` as copy-started at version 1 (whatever its ``state`` and
        ``version`` say; the times are stored as given) and return it as stored. Call it before
        uploading the object.

        In one transaction: with ``lease``, raises LeaseLostError unless the lease row still
        has its holder and epoch; raises UnknownTopicOrPartitionError unless a topic has
        ``topic_id`` and that partition; raises StaleVersionError (retriable) if a copy-finished
        segment of the partition overlaps ``[base_offset, next_offset)`` or the segment id is
        taken. Raises InvalidArgumentError for a field out of range (see the table's check
        constraints: ``last_offset >= base_offset - 1``, ``next_offset > last_offset``,
        ``size_bytes >= data_bytes >= 0``; ids and keys 1 to their column's length). Nothing is
        written when it raises.
        """
        ...

    def finish_remote_copy(
        self, segment: RemoteSegment, *, updated_ms: int, lease: Lease | None = None
    ) -> RemoteSegment:
        """Make the segment live: copy-started -> copy-finished, ``version`` + 1, return it as
        stored. Call it once the object is completely uploaded.

        A compare-and-swap: raises StaleVersionError, with nothing written, if the row is gone,
        is not copy-started or is not at ``segment.version``, or if a copy-finished segment of
        the partition overlaps the stored range (so of two copies of one range, the first to
        finish wins). The overlap check and the state change are atomic across threads,
        processes and hosts: live segments of a partition never overlap. ``lease`` is fenced
        as in :meth:`begin_remote_copy`.
        """
        ...

    def begin_remote_delete(
        self, segment: RemoteSegment, *, updated_ms: int
    ) -> RemoteSegment | None:
        """Stop readers using the segment: copy-started or copy-finished -> delete-started,
        ``version`` + 1; return it as stored. Call it before deleting the object.

        A compare-and-swap on ``segment.version``: raises StaleVersionError if the row is in
        another state at another version. Idempotent: a row already delete-started is returned
        as stored (unchanged), and None is returned if the row is gone (the deletion completed).
        """
        ...

    def delete_remote_segment(self, segment_id: str) -> None:
        """Delete the manifest row of a delete-started segment (after its object is deleted).

        Idempotent: no row, nothing to do. Raises StaleVersionError if the row is in another
        state (deleting a live row would leave a hole: :meth:`begin_remote_delete` first).
        """
        ...

    def remote_segments(
        self,
        topic_id: str | None = None,
        partition: int | None = None,
        *,
        states: Iterable[str] | None = None,
    ) -> list[RemoteSegment]:
        """The manifest rows (of ``topic_id``, ``partition`` and ``states`` only, for those
        given), sorted by topic id, partition, base offset and segment id. A consistent
        snapshot, no lock. Raises InvalidArgumentError for an unknown state name.
        """
        ...

    # --- users and ACLs of the broker (see logstore.backends.security_records) ---------------

    def put_scram_credentials(
        self, user: str, credentials: Iterable[ScramCredential], *, replace: bool = False
    ) -> None:
        """Make ``credentials`` (one per mechanism, at least one) the user's whole set, in one
        transaction: with ``replace`` the user's other credentials are deleted (a changed
        password leaves no mechanism accepting the old one). Raises DuplicateResourceError if
        the user has credentials and not ``replace``, InvalidArgumentError for a bad set.
        """
        ...

    def get_scram_credential(
        self, user: str, mechanism: ScramMechanism
    ) -> ScramCredential | None:
        """The user's credential for ``mechanism``, or None (no such user or mechanism)."""
        ...

    def list_scram_credentials(self, user: str | None = None) -> list[ScramCredential]:
        """Every credential (of ``user`` only, if given), sorted by user, then mechanism."""
        ...

    def delete_scram_credentials(self, user: str) -> list[ScramCredential]:
        """Delete every credential of ``user``; return them (empty: there was no such user)."""
        ...

    def add_acls(self, bindings: Iterable[AclBinding]) -> list[AclBinding]:
        """Store the bindings; return those not stored before (adding is idempotent)."""
        ...

    def list_acls(self, acl_filter: AclFilter | None = None) -> list[AclBinding]:
        """The bindings ``acl_filter`` matches (every one: None), sorted by resource."""
        ...

    def delete_acls(self, acl_filter: AclFilter) -> list[AclBinding]:
        """Delete the bindings ``acl_filter`` matches and return them."""
        ...

    # --- brokers (see logstore.backends.broker_records) ---------------------------------------

    def register_broker(self, broker_id: int, host: str, port: int, rack: str | None, *,
                        session_timeout_ms: int, now_ms: int | None = None,
                        ) -> BrokerRegistration:
        """Register broker ``broker_id`` reachable at ``host``:``port`` with the next broker
        epoch of its id and a session lasting ``session_timeout_ms`` from now (the database's
        clock; ``now_ms`` replaces it, for tests). Raises DuplicateResourceError while another
        registration of the id is alive, InvalidArgumentError for bad values."""
        ...

    def renew_broker_session(self, registration: BrokerRegistration, *,
                             session_timeout_ms: int, now_ms: int | None = None,
                             ) -> BrokerRegistration:
        """Extend the session of ``registration`` to ``session_timeout_ms`` from now; raises
        StaleVersionError (not retriable) if a newer registration replaced it or it was
        unregistered. A lapsed session is extended too while its epoch is current."""
        ...

    def unregister_broker(self, registration: BrokerRegistration, *,
                          now_ms: int | None = None) -> bool:
        """End the session of ``registration`` now (the row stays, listed dead, so the id's
        epochs never go back) if it is still the latest and alive; True if it ended it."""
        ...

    def list_brokers(self, *, now_ms: int | None = None) -> list[BrokerRegistration]:
        """Every registered broker by id, ``alive`` as of now (the database's clock)."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent; any other call after it raises IllegalStateError."""
        ...

    def __enter__(self) -> MetadataStore:
        ...

    def __exit__(self, *exc_info: object) -> None:
        ...
