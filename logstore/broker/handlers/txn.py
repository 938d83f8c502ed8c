"""Transactions over the wire: AddPartitionsToTxn (v0-v3), AddOffsetsToTxn (v0-v3), EndTxn
(v0-v3) and TxnOffsetCommit (v0-v3), served by the embedded transaction coordinator
(``coordinator/transaction_coordinator.py``), whose state lives in the metadata store; and the
checks the produce path makes on transactional batches (:func:`verify_produce`).
DescribeProducers, DescribeTransactions and ListTransactions are in ``txn_admin``.

With one broker the coordinator writes the COMMIT/ABORT markers itself (``Log._write_markers``),
so WriteTxnMarkers is not served. EndTxn before v5 gives the client no new epoch, so it ends
transactions the classic way: the producer keeps its epoch and its sequences and runs its next
transaction with them (the coordinator's claims keep a late marker of one transaction out of
the next, see ``log/producer_state.py``).

Error codes: the served versions predate KIP-890's TRANSACTION_ABORTABLE, so the coordinator's
exceptions are answered with codes these versions (and librdkafka, kafka-python) understand:

* ProducerFencedError: PRODUCER_FENCED from v2 on, INVALID_PRODUCER_EPOCH before (Kafka's rule);
  TxnOffsetCommit and Produce always INVALID_PRODUCER_EPOCH.
* TransactionAbortedError (the coordinator aborted the transaction after its timeout) and
  TransactionalIdNotFoundError: INVALID_PRODUCER_ID_MAPPING, which librdkafka treats as
  abortable with an epoch bump (KIP-360: after ``abort_transaction()`` it asks InitProducerId
  for the next epoch and goes on); UNKNOWN_PRODUCER_ID in TxnOffsetCommit and Produce, where
  INVALID_PRODUCER_ID_MAPPING would be fatal or unknown to it.
* ConcurrentTransactionsError: CONCURRENT_TRANSACTIONS (retriable); other retriable errors (a
  busy metadata store) and, in EndTxn, any StorageError (a marker could not be written):
  COORDINATOR_LOAD_IN_PROGRESS, which every client retries; the retried EndTxn writes the
  markers again and completes the transaction (its decision is already recorded).
* CommitFailedError (KIP-447: the consumer's generation or member id is stale):
  ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID.

Authorization, as Kafka's ``KafkaApis``, before the coordinator is asked anything (a refusal
changes nothing): every request needs WRITE on its transactional id, else
TRANSACTIONAL_ID_AUTHORIZATION_FAILED (for every partition, in AddPartitionsToTxn and
TxnOffsetCommit). AddPartitionsToTxn needs WRITE on each topic: the partitions of the others
get TOPIC_AUTHORIZATION_FAILED and, as for a missing partition, none is added (the rest get
OPERATION_NOT_ATTEMPTED). AddOffsetsToTxn and TxnOffsetCommit need READ on the group, else
GROUP_AUTHORIZATION_FAILED; TxnOffsetCommit needs READ on each topic, else
TOPIC_AUTHORIZATION_FAILED for its partitions, while the others' offsets are sent.

Thread-safety: handlers run on the event loop; every coordinator and storage call goes through
``ctx.run``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kio.schema.errors import ErrorCode

from logstore.backends.group_records import CommittedOffset, GroupSnapshot
from logstore.backends.txn_records import (
    BUMP_TIMEOUT,
    COMPLETE_STATES,
    ONGOING,
    PREPARE_STATES,
    TransactionRecord,
)
from logstore.broker.auth import AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers import txn_admin
from logstore.broker.handlers.common import authorize_names, error_code, partition_count
from logstore.coordinator import txn_state
from logstore.errors import (
    CommitFailedError,
    ConcurrentTransactionsError,
    InvalidRecordError,
    InvalidTxnStateError,
    LogstoreError,
    ProducerFencedError,
    StorageError,
    TransactionAbortedError,
    TransactionalIdNotFoundError,
    UnknownTopicOrPartitionError,
)
from logstore.protocol.apis import ApiKey, VersionRange
from logstore.records.control import coordinator_epoch_for
from logstore.records.header import parse_header
from logstore.types import TopicPartition

TXN_VERSIONS = VersionRange(0, 3)

# Kafka error codes this module answers with beyond those LogstoreErrors carry.
COORDINATOR_LOAD_IN_PROGRESS = 14
NOT_ENOUGH_REPLICAS = 19
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
INVALID_PRODUCER_EPOCH = 47
INVALID_PRODUCER_ID_MAPPING = 49
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
OPERATION_NOT_ATTEMPTED = 55
UNKNOWN_PRODUCER_ID = 59
FENCED_INSTANCE_ID = 82
PRODUCER_FENCED = 90
#: The versions of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn that know PRODUCER_FENCED.
_PRODUCER_FENCED_SINCE = 2


class WireError(LogstoreError):
    """A refusal answered with a given Kafka error code (a translation of a coordinator error
    for the client's protocol version). Stays inside the broker: handlers turn it into its
    code."""

    def __init__(self, message: str, code: int, *, retriable: bool = False) -> None:
        super().__init__(message, retriable=retriable)
        self.error_code = code


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.ADD_PARTITIONS_TO_TXN, TXN_VERSIONS, add_partitions_to_txn)
    dispatcher.register(ApiKey.ADD_OFFSETS_TO_TXN, TXN_VERSIONS, add_offsets_to_txn)
    dispatcher.register(ApiKey.END_TXN, TXN_VERSIONS, end_txn)
    dispatcher.register(ApiKey.TXN_OFFSET_COMMIT, TXN_VERSIONS, txn_offset_commit)
    txn_admin.register(dispatcher)


def coordinator_error_code(exc: BaseException, *, fenced: int, aborted: int) -> int:
    """The code to answer a coordinator call's exception with: ``fenced`` for
    ProducerFencedError, ``aborted`` for TransactionAbortedError and
    TransactionalIdNotFoundError (see the module docstring)."""
    if isinstance(exc, ProducerFencedError):
        return fenced
    if isinstance(exc, (TransactionAbortedError, TransactionalIdNotFoundError)):
        return aborted
    if isinstance(exc, WireError):
        return exc.error_code
    if (isinstance(exc, LogstoreError) and exc.retriable
            and not isinstance(exc, ConcurrentTransactionsError)):
        return COORDINATOR_LOAD_IN_PROGRESS
    return error_code(exc)


def _fenced_code(api_version: int) -> int:
    return PRODUCER_FENCED if api_version >= _PRODUCER_FENCED_SINCE else INVALID_PRODUCER_EPOCH


async def _refusal(ctx: RequestContext, transactional_id: str,
                   group_id: str | None = None) -> int | None:
    """The code refusing the principal a transactional request: WRITE on the id, then READ
    on the group (if any); None if both are allowed."""
    if not await ctx.authorize(ResourceType.TRANSACTIONAL_ID, transactional_id,
                               AclOperation.WRITE):
        return TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    if group_id is not None and not await ctx.authorize(ResourceType.GROUP, group_id,
                                                        AclOperation.READ):
        return GROUP_AUTHORIZATION_FAILED
    return None


# --- AddPartitionsToTxn ----------------------------------------------------------------------


async def add_partitions_to_txn(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.ADD_PARTITIONS_TO_TXN, ctx.api_version)
    wanted = [TopicPartition(topic.name, index)
              for topic in request.v3_and_below_topics for index in topic.partitions]
    transactional_id = request.v3_and_below_transactional_id
    refusal = await _refusal(ctx, transactional_id)
    if refusal is not None:
        codes = dict.fromkeys(wanted, refusal)
    else:
        _, denied = await authorize_names(ctx, ResourceType.TOPIC, (tp.topic for tp in wanted),
                                          AclOperation.WRITE)
        codes = await ctx.run(
            _add_partitions, ctx, transactional_id, request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch, wanted, denied)
    by_topic: dict[str, list[Any]] = {}
    for tp in wanted:
        by_topic.setdefault(tp.topic, []).append(build_in(
            module, "AddPartitionsToTxnPartitionResult", partition_index=tp.partition,
            partition_error_code=ErrorCode(codes[tp])))
    return build(module.AddPartitionsToTxnResponse, throttle_time_ms=0,
                 results_by_topic_v3_and_below=tuple(
                     build_in(module, "AddPartitionsToTxnTopicResult", name=name,
                              results_by_partition=tuple(results))
                     for name, results in by_topic.items()))


def _add_partitions(ctx: RequestContext, transactional_id: str, producer_id: int, epoch: int,
                    wanted: list[TopicPartition], denied: set[str]) -> dict[TopicPartition, int]:
    """Each partition's code. As Kafka: if any partition's topic is in ``denied`` (no WRITE)
    or does not exist, none is added (the others get OPERATION_NOT_ATTEMPTED)."""
    missing = {tp: TOPIC_AUTHORIZATION_FAILED for tp in wanted if tp.topic in denied}
    missing |= {tp: error_code(exc) for tp in wanted
                if tp not in missing and (exc := _partition_problem(ctx, tp)) is not None}
    if missing:
        return {tp: missing.get(tp, OPERATION_NOT_ATTEMPTED) for tp in wanted}
    try:
        ctx.services.log.transaction_coordinator.add_partitions(
            transactional_id, producer_id, epoch, wanted)
        code = 0
    except Exception as exc:  # noqa: BLE001 - answered with its error code
        code = coordinator_error_code(exc, fenced=_fenced_code(ctx.api_version),
                                      aborted=INVALID_PRODUCER_ID_MAPPING)
    return dict.fromkeys(wanted, code)


def _partition_problem(ctx: RequestContext, tp: TopicPartition) -> LogstoreError | None:
    try:
        partitions, _ = ctx.services.log.topic_info(tp.topic)
    except LogstoreError as exc:
        return exc
    if not 0 <= tp.partition < partitions:
        return UnknownTopicOrPartitionError(f"{tp.topic} has no partition {tp.partition}")
    return None


# --- AddOffsetsToTxn and TxnOffsetCommit -----------------------------------------------------


async def add_offsets_to_txn(ctx: RequestContext, request: Any) -> Any:
    """Begins the transaction (if none is ongoing) on behalf of the group: its offsets follow
    in TxnOffsetCommit, and only those are committed with it."""
    module = response_module(ApiKey.ADD_OFFSETS_TO_TXN, ctx.api_version)
    code = await _refusal(ctx, request.transactional_id, request.group_id)
    if code is None:
        code = await ctx.run(_add_offsets, ctx, request.transactional_id, request.producer_id,
                             request.producer_epoch, request.group_id)
    return build(module.AddOffsetsToTxnResponse, throttle_time_ms=0, error_code=code)


def _add_offsets(ctx: RequestContext, transactional_id: str, producer_id: int, epoch: int,
                 group_id: str) -> int:
    try:
        txn_state.check_group_id(group_id)
        # No partition: the group's offsets are registered by TxnOffsetCommit (registering the
        # group here would create it, with no offsets, if the transaction commits).
        ctx.services.log.transaction_coordinator.add_partitions(
            transactional_id, producer_id, epoch, ())
    except Exception as exc:  # noqa: BLE001 - answered with its error code
        return coordinator_error_code(exc, fenced=_fenced_code(ctx.api_version),
                                      aborted=INVALID_PRODUCER_ID_MAPPING)
    return 0


async def txn_offset_commit(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.TXN_OFFSET_COMMIT, ctx.api_version)
    offsets = {
        TopicPartition(topic.name, p.partition_index): CommittedOffset(
            p.committed_offset, p.committed_metadata or "",
            getattr(p, "committed_leader_epoch", -1))
        for topic in request.topics for p in topic.partitions
    }
    code = await _refusal(ctx, request.transactional_id, request.group_id)
    denied: set[str] = set()
    unknown: set[TopicPartition] = set()
    if code is None:
        _, denied = await authorize_names(ctx, ResourceType.TOPIC, (tp.topic for tp in offsets),
                                          AclOperation.READ)
        names = list(dict.fromkeys(tp.topic for tp in offsets if tp.topic not in denied))
        counts = await asyncio.gather(*(ctx.run(partition_count, ctx.services.log, name)
                                        for name in names))
        count_of = dict(zip(names, counts, strict=True))
        unknown = {tp for tp in offsets if tp.topic not in denied
                   and not 0 <= tp.partition < count_of[tp.topic]}
        allowed = {tp: offset for tp, offset in offsets.items()
                   if tp.topic not in denied and tp not in unknown}
        code = 0 if not allowed else await ctx.run(
            _commit_offsets, ctx, request.transactional_id, request.producer_id,
            request.producer_epoch, request.group_id, allowed,
            getattr(request, "member_id", ""), getattr(request, "generation_id", -1),
            getattr(request, "group_instance_id", None))
    by_topic: dict[str, list[Any]] = {}
    for tp in offsets:
        by_topic.setdefault(tp.topic, []).append(build_in(
            module, "TxnOffsetCommitResponsePartition", partition_index=tp.partition,
            error_code=TOPIC_AUTHORIZATION_FAILED if tp.topic in denied
            else UnknownTopicOrPartitionError.error_code if tp in unknown else code))
    return build(module.TxnOffsetCommitResponse, throttle_time_ms=0, topics=tuple(
        build_in(module, "TxnOffsetCommitResponseTopic", name=name, partitions=tuple(entries))
        for name, entries in by_topic.items()))


def _commit_offsets(
    ctx: RequestContext, transactional_id: str, producer_id: int, epoch: int, group_id: str,
    offsets: dict[TopicPartition, CommittedOffset], member_id: str, generation: int,
    group_instance_id: str | None,
) -> int:
    """One code for every partition: the coordinator stores the offsets all or none."""
    try:
        ctx.services.log.transaction_coordinator.add_offsets(
            transactional_id, producer_id, epoch, group_id, offsets,
            member_id=member_id, generation=generation)
    except CommitFailedError:
        group = ctx.services.log.metadata.read_group(group_id)
        return _member_error_code(group, member_id, group_instance_id)
    except Exception as exc:  # noqa: BLE001 - answered with its error code
        return coordinator_error_code(exc, fenced=INVALID_PRODUCER_EPOCH,
                                      aborted=UNKNOWN_PRODUCER_ID)
    return 0


def _member_error_code(group: GroupSnapshot, member_id: str,
                       group_instance_id: str | None) -> int:
    """Why a KIP-447 check refused a member, as TxnOffsetCommit v3 says it."""
    if group_instance_id is not None:
        for member in group.members:
            if member.group_instance_id == group_instance_id and member.member_id != member_id:
                return FENCED_INSTANCE_ID
    if group.member(member_id) is None:
        return UNKNOWN_MEMBER_ID
    return ILLEGAL_GENERATION


# --- EndTxn ----------------------------------------------------------------------------------


async def end_txn(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.END_TXN, ctx.api_version)
    code = await _refusal(ctx, request.transactional_id)
    if code is None:
        code = await ctx.run(_end, ctx, request.transactional_id, request.producer_id,
                             request.producer_epoch, request.committed)
    return build(module.EndTxnResponse, throttle_time_ms=0, error_code=code)


def _end(ctx: RequestContext, transactional_id: str, producer_id: int, epoch: int,
         commit: bool) -> int:
    try:
        # Classic (bump=False): the served versions cannot return a bumped epoch.
        ctx.services.log.transaction_coordinator.end_transaction(
            transactional_id, producer_id, epoch, commit, bump=False)
    except StorageError:
        # A marker could not be written: the decision is recorded, and the client's retry of
        # EndTxn writes the markers again and completes it.
        return COORDINATOR_LOAD_IN_PROGRESS
    except Exception as exc:  # noqa: BLE001 - answered with its error code
        return coordinator_error_code(exc, fenced=_fenced_code(ctx.api_version),
                                      aborted=INVALID_PRODUCER_ID_MAPPING)
    return 0


# --- the produce path ------------------------------------------------------------------------


async def verify_produce(
    ctx: RequestContext, transactional_id: str | None,
    batches: list[tuple[str, int, bytes | None]],
) -> tuple[dict[int, LogstoreError], int | None]:
    """Refusals of a produce request's batches (by index in ``batches``), before any is
    appended, and the claim (coordinator epoch) the transaction was verified at, for the
    append (None when no batch is transactional).

    Clients may not write control batches (markers come from the coordinator only). A
    transactional batch must belong to the ongoing transaction of ``transactional_id`` and its
    partition must have been added to it (KIP-890 part 1, as Kafka 3.x verifies): a batch whose
    partition was never added would otherwise hold the last stable offset back with a
    transaction its coordinator knows nothing about. Batches whose header does not parse are
    left to the append, which reports them. Headers are read on the event loop (a few
    microseconds); one metadata read per request with transactional batches, none otherwise.

    The read and the append are not atomic; a transaction that ends in between has written
    its markers with a claim newer than the version read here, and the partition refuses a
    batch verified before such a marker (``producer_state``, the verification guard of Kafka
    3.6): a late batch never opens a transaction its coordinator has finished.
    """
    refused: dict[int, LogstoreError] = {}
    transactional: dict[int, tuple[TopicPartition, int, int]] = {}
    for index, (topic, partition, records) in enumerate(batches):
        try:
            header = parse_header(records or b"")
        except LogstoreError:
            continue
        if header.is_control:
            refused[index] = InvalidRecordError(
                "clients may not write control batches (transaction markers)")
        elif header.is_transactional and header.producer_id >= 0:
            transactional[index] = (TopicPartition(topic, partition), header.producer_id,
                                    header.producer_epoch)
    if not transactional:
        return refused, None
    if transactional_id is None:
        for index in transactional:
            refused[index] = InvalidTxnStateError(
                "a transactional batch needs the produce request's transactional id")
        return refused, None
    try:
        record = await ctx.run(ctx.services.log.transaction_coordinator.describe_transaction,
                               transactional_id)
    except TransactionalIdNotFoundError as exc:
        return refused | dict.fromkeys(
            transactional, WireError(str(exc), UNKNOWN_PRODUCER_ID)), None
    except LogstoreError as exc:
        unverified = WireError(f"could not verify the transaction: {exc}", NOT_ENOUGH_REPLICAS,
                               retriable=True)
        return refused | dict.fromkeys(transactional, unverified), None
    for index, (tp, producer_id, epoch) in transactional.items():
        problem = _verify(record, tp, producer_id, epoch)
        if problem is not None:
            refused[index] = problem
    return refused, coordinator_epoch_for(record.version)


def _verify(record: TransactionRecord, tp: TopicPartition, producer_id: int,
            epoch: int) -> LogstoreError | None:
    tid = record.transactional_id
    if (record.last_bump == BUMP_TIMEOUT and record.state in PREPARE_STATES + COMPLETE_STATES
            and (producer_id, epoch) == (record.previous_producer_id, record.previous_epoch)):
        # The coordinator aborted this producer's transaction after its timeout: abortable
        # with an epoch bump (KIP-360), as UNKNOWN_PRODUCER_ID tells the clients.
        return WireError(f"the transaction of {tid!r} timed out and was aborted: abort it",
                         UNKNOWN_PRODUCER_ID)
    if producer_id != record.producer_id:
        return WireError(f"producer {producer_id} is not the producer of {tid!r}",
                         INVALID_PRODUCER_ID_MAPPING)
    if epoch != record.producer_epoch:
        return WireError(f"producer {producer_id} epoch {epoch} is fenced: {tid!r} is at epoch "
                         f"{record.producer_epoch}", INVALID_PRODUCER_EPOCH)
    if record.state in PREPARE_STATES:
        # Retriable, in a code that clients of these versions retry (Kafka's choice).
        return WireError(f"the previous transaction of {tid!r} is still completing",
                         NOT_ENOUGH_REPLICAS, retriable=True)
    if record.state != ONGOING or tp not in record.partitions:
        return InvalidTxnStateError(
            f"partition {tp.topic}-{tp.partition} was not added to the transaction of {tid!r}")
    return None


def produce_error(exc: BaseException) -> BaseException:
    """A partition's append error as Produce v3-v9 answer it: a stale epoch is
    INVALID_PRODUCER_EPOCH there (PRODUCER_FENCED is not a Produce error)."""
    if isinstance(exc, ProducerFencedError):
        return WireError(str(exc), INVALID_PRODUCER_EPOCH)
    return exc
