"""The one exception hierarchy of logstore.

Every error a caller can see is a :class:`LogstoreError`. Each class says whether retrying the
same call may succeed (``retriable``) and carries the Kafka protocol error code it corresponds to
(``error_code``), so the Kafka-protocol broker on the roadmap can answer with the same errors.

Foreign exceptions (apsw, SQLAlchemy, boto3, compression libraries) are translated into these at
the boundary of the module that wraps the library; they never leak to callers.

This module is a leaf: it imports nothing from logstore.
"""

from __future__ import annotations


class LogstoreError(Exception):
    """Base class of every logstore error.

    ``retriable`` is True when the same call may succeed later without any change by the caller
    (a locked database, a timeout, a busy lease). ``error_code`` is the Kafka error code.
    """

    retriable: bool = False
    error_code: int = -1  # UNKNOWN_SERVER_ERROR

    def __init__(self, message: str = "", *, retriable: bool | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.__class__.__name__)
        if retriable is not None:
            self.retriable = retriable


# --- records -------------------------------------------------------------------------------


class CorruptRecordError(LogstoreError):
    """Record batch bytes are malformed: truncated, bad CRC, bad lengths or undecodable."""

    error_code = 2  # CORRUPT_MESSAGE


class InvalidRecordError(LogstoreError):
    """A record or batch is well-formed but not acceptable (e.g. wrong magic, bad offsets)."""

    error_code = 87  # INVALID_RECORD


class RecordTooLargeError(LogstoreError):
    """A record or batch is larger than the topic's ``max.message.bytes``."""

    error_code = 10  # MESSAGE_TOO_LARGE


class UnsupportedCompressionError(LogstoreError):
    """The batch uses a compression codec this build cannot handle."""

    error_code = 76  # UNSUPPORTED_COMPRESSION_TYPE


# --- topics, partitions, configs -------------------------------------------------------------


class InvalidTopicError(LogstoreError):
    """The topic name is not legal (Kafka's rules: [a-zA-Z0-9._-], 1..249 chars, not . or ..)."""

    error_code = 17  # INVALID_TOPIC_EXCEPTION


class TopicAlreadyExistsError(LogstoreError):
    """A topic with this name exists."""

    error_code = 36  # TOPIC_ALREADY_EXISTS


class UnknownTopicOrPartitionError(LogstoreError):
    """The topic or partition does not exist."""

    error_code = 3  # UNKNOWN_TOPIC_OR_PARTITION


class InvalidPartitionsError(LogstoreError):
    """The partition count is not valid (must be >= 1 and may only grow)."""

    error_code = 37  # INVALID_PARTITIONS


class InvalidReplicationFactorError(LogstoreError):
    """A replication factor this cluster cannot have."""

    error_code = 38  # INVALID_REPLICATION_FACTOR


class InvalidReplicaAssignmentError(LogstoreError):
    """A manual replica assignment this cluster cannot have."""

    error_code = 39  # INVALID_REPLICA_ASSIGNMENT


class InvalidConfigurationError(LogstoreError):
    """A configuration key is unknown or its value is not valid."""

    error_code = 40  # INVALID_CONFIG


# --- offsets -------------------------------------------------------------------------------


class OffsetOutOfRangeError(LogstoreError):
    """The offset is below the log start offset or above the log end offset."""

    error_code = 1  # OFFSET_OUT_OF_RANGE

    def __init__(
        self,
        message: str = "",
        *,
        offset: int | None = None,
        log_start_offset: int | None = None,
        log_end_offset: int | None = None,
    ) -> None:
        super().__init__(message)
        self.offset = offset
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_end_offset


class NoOffsetForPartitionError(LogstoreError):
    """The consumer has no position for a partition and ``auto_offset_reset`` is ``none``."""


# --- storage and metadata --------------------------------------------------------------------


class StorageError(LogstoreError):
    """The local log storage failed (I/O error, full disk, unreadable segment)."""

    error_code = 56  # KAFKA_STORAGE_ERROR


class DatabaseLockedError(StorageError):
    """A SQLite database stayed locked by another process past the busy timeout."""

    retriable = True


class CorruptFileError(StorageError):
    """A file of the storage engine is damaged (SQLite found it malformed, or it is not what
    its name says). The message names the file; ``logstore check`` reports every such file."""


class DiskFullError(StorageError):
    """The file system holding the data directory is full: nothing was written. Free space
    (retention, ``logstore maintenance``, a bigger disk) and retry."""


class TooManyOpenFilesError(StorageError):
    """The process ran out of file descriptors (``ulimit -n``). Raise the limit, or give the
    log a smaller ``max_open_files`` budget so it closes idle files sooner."""


class PartitionOfflineError(StorageError):
    """A partition's files are missing or damaged in a way that could make it hand out offsets
    again (its directory, its state file or its active segment is gone, or its log end went
    backwards): it serves neither reads nor appends until an operator decides
    (``logstore check``, ``logstore repair``). Other partitions keep serving."""

    def __init__(self, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class MissingSegmentError(StorageError):
    """A segment file that the partition lists is gone, so offsets ``[start_offset,
    end_offset)`` cannot be read (a hole). The rest of the partition keeps serving; ``logstore
    repair`` decides what becomes of the range."""

    def __init__(
        self, message: str = "", *, path: str | None = None, start_offset: int = -1,
        end_offset: int = -1,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.start_offset = start_offset
        self.end_offset = end_offset


class InconsistentTopicIdError(StorageError):
    """A partition directory belongs to another incarnation of the topic (a different topic
    id) and holds records: logstore never deletes them to make room. Move the directory away,
    or adopt it (``logstore repair --adopt``)."""

    error_code = 103  # INCONSISTENT_TOPIC_ID


class MetadataStoreError(LogstoreError):
    """The metadata store failed or could not be reached."""

    retriable = True


class StaleVersionError(LogstoreError):
    """A compare-and-swap lost: the row's version or epoch changed since it was read."""

    retriable = True


class LeaseLostError(StaleVersionError):
    """A lease is no longer held by the caller: another holder took it over (after it expired)
    or it was released, so its epoch is stale. Work fenced by that lease (e.g. a compactor's
    checkpoint) was not written. Not retriable: the same call with the same lease can never
    succeed; acquire the lease anew (with a new epoch) and redo the work."""

    retriable = False


# --- consumer groups -------------------------------------------------------------------------


class InvalidGroupIdError(LogstoreError):
    """The group id is not valid (1 to 255 characters)."""

    error_code = 24  # INVALID_GROUP_ID


class GroupIdNotFoundError(LogstoreError):
    """The group does not exist."""

    error_code = 69  # GROUP_ID_NOT_FOUND


class GroupNotEmptyError(LogstoreError):
    """The operation needs a group without live members (delete, offset reset)."""

    error_code = 68  # NON_EMPTY_GROUP


class UnknownMemberIdError(LogstoreError):
    """The member is not (or no longer) in the group: it must rejoin."""

    error_code = 25  # UNKNOWN_MEMBER_ID


class IllegalGenerationError(LogstoreError):
    """The request carries a generation the group has left behind: the member is stale."""

    error_code = 22  # ILLEGAL_GENERATION


class RebalanceInProgressError(LogstoreError):
    """The group is rebalancing: the member must rejoin."""

    retriable = True
    error_code = 27  # REBALANCE_IN_PROGRESS


class FencedInstanceIdError(LogstoreError):
    """Another member took over this static member's group.instance.id (KIP-345)."""

    error_code = 82  # FENCED_INSTANCE_ID


class InconsistentGroupProtocolError(LogstoreError):
    """The member's protocol type or assignors are incompatible with the group's."""

    error_code = 23  # INCONSISTENT_GROUP_PROTOCOL


class CommitFailedError(LogstoreError):
    """An offset commit was rejected because this consumer is no longer a current member of
    its group (its generation is stale or it was removed); the records since the last commit
    may be processed again by the new owner of their partitions."""


# --- transactions ----------------------------------------------------------------------------


class ProducerFencedError(LogstoreError):
    """A newer instance of this producer (same transactional id) took over, or the producer's
    epoch is older than the partition's: this producer must stop."""

    error_code = 90  # PRODUCER_FENCED


class OutOfOrderSequenceError(LogstoreError):
    """A batch's sequence number does not follow the producer's last one in this partition."""

    error_code = 45  # OUT_OF_ORDER_SEQUENCE_NUMBER


class UnknownProducerIdError(LogstoreError):
    """The partition has no state for this producer id and the batch does not start at
    sequence 0: the producer's state expired there (no write for 7 days, Kafka's
    ``producer.id.expiration.ms``), or the topic was deleted and created again since the
    producer last wrote to it. An idempotent producer resets its sequences (KIP-360); for a
    transactional one the transaction must be aborted."""

    error_code = 59  # UNKNOWN_PRODUCER_ID


class InvalidTxnStateError(LogstoreError):
    """The request is not valid in the transaction's current state (e.g. committing when no
    transaction is ongoing, or aborting one whose commit is already prepared)."""

    error_code = 48  # INVALID_TXN_STATE


class ConcurrentTransactionsError(LogstoreError):
    """The previous transaction of this transactional id is still completing (its markers are
    being written): retry shortly."""

    retriable = True
    error_code = 51  # CONCURRENT_TRANSACTIONS


class TransactionAbortedError(LogstoreError):
    """The transaction timed out (or an operator aborted it) and the coordinator aborted it.
    Abortable, not fatal: the producer must abort the transaction, which adopts the bumped
    epoch, and may then start a new one."""

    error_code = 120  # TRANSACTION_ABORTABLE (KIP-890)


class TransactionalIdNotFoundError(LogstoreError):
    """No producer has been initialized with this transactional id."""

    error_code = 105  # TRANSACTIONAL_ID_NOT_FOUND


# --- clients -------------------------------------------------------------------------------


class LogstoreTimeoutError(LogstoreError):
    """An operation did not complete within its timeout."""

    retriable = True
    error_code = 7  # REQUEST_TIMED_OUT


class IllegalStateError(LogstoreError):
    """The call is not valid in the object's current state (e.g. a closed producer)."""


class BufferExhaustedError(LogstoreTimeoutError):
    """The producer's buffer stayed full past ``max_block_ms``."""


class InvalidArgumentError(LogstoreError, ValueError):
    """An argument has the wrong type or value."""

    error_code = 42  # INVALID_REQUEST




# --- security (the broker: SASL, ACLs; the users and ACLs of the metadata store) -------------


class AuthenticationError(LogstoreError):
    """A client could not be authenticated (the broker closes its connection)."""

    error_code = 58  # SASL_AUTHENTICATION_FAILED


class UnsupportedSaslMechanismError(AuthenticationError):
    """The client asked for a SASL mechanism this listener does not enable."""

    error_code = 33  # UNSUPPORTED_SASL_MECHANISM


class IllegalSaslStateError(AuthenticationError):
    """A SASL request out of order (authenticating before the handshake, or twice)."""

    error_code = 34  # ILLEGAL_SASL_STATE


class AuthorizationError(LogstoreError):
    """The principal is not allowed the operation (by the ACLs)."""

    error_code = 31  # CLUSTER_AUTHORIZATION_FAILED


class TopicAuthorizationFailedError(AuthorizationError):
    """The principal is not allowed the operation on this topic."""

    error_code = 29  # TOPIC_AUTHORIZATION_FAILED


class GroupAuthorizationFailedError(AuthorizationError):
    """The principal is not allowed the operation on this consumer group."""

    error_code = 30  # GROUP_AUTHORIZATION_FAILED


class TransactionalIdAuthorizationFailedError(AuthorizationError):
    """The principal is not allowed the operation on this transactional id."""

    error_code = 53  # TRANSACTIONAL_ID_AUTHORIZATION_FAILED


class ResourceNotFoundError(LogstoreError):
    """The resource named (a user, an ACL) does not exist."""

    error_code = 91  # RESOURCE_NOT_FOUND


class DuplicateResourceError(LogstoreError):
    """The resource named (a user) already exists."""

    error_code = 92  # DUPLICATE_RESOURCE


# --- object stores -----------------------------------------------------------------------------


class ObjectStoreError(LogstoreError):
    """An object store request failed (I/O error, timeout, throttling, a 5xx answer).

    Retriable unless raised with ``retriable=False`` (e.g. an unexpected 4xx answer).
    """

    retriable = True
    error_code = 56  # KAFKA_STORAGE_ERROR


class ObjectNotFoundError(ObjectStoreError):
    """The object does not exist in the object store."""

    retriable = False


class PreconditionFailedError(ObjectStoreError):
    """A conditional write lost: ``put(..., if_none_match=True)`` found the key already there.

    ``maybe_own_write`` is True when an earlier attempt of the same call failed after the
    request may have reached the store (a timeout, a dropped connection): the object found may
    then be the caller's own write, and the caller should compare it (size) before giving up.
    """

    retriable = False

    def __init__(self, message: str = "", *, maybe_own_write: bool = False) -> None:
        super().__init__(message)
        self.maybe_own_write = maybe_own_write


class ObjectRangeError(ObjectStoreError):
    """A ranged read starts beyond the end of the object."""

    retriable = False


class ObjectStoreAccessError(ObjectStoreError):
    """The object store cannot be used as configured: no such bucket or directory, access
    denied, invalid credentials, a wrong region or endpoint. Needs an operator's fix."""

    retriable = False


class RemoteStorageError(LogstoreError):
    """Tiered (remote) data cannot be served: the offset lies in a remote segment and this log
    was opened without an object store, or the manifest and the object store disagree (an
    object the manifest lists is missing or damaged). Needs an operator's fix."""

    error_code = 56  # KAFKA_STORAGE_ERROR


__all__ = [name for name in dir() if name.endswith("Error")]
