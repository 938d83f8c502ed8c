"""The transaction state machine, step by step, on plain values (no store, no clock, no I/O)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from logstore.backends.group_records import (
    CommittedOffset,
    GroupRecord,
    GroupSnapshot,
    MemberRecord,
)
from logstore.backends.txn_records import (
    BUMP_END,
    BUMP_INIT,
    BUMP_TIMEOUT,
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    EMPTY,
    MAX_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    ONGOING,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    ProducerIdAndEpoch,
    TransactionRecord,
    TxnUpdate,
)

from logstore.coordinator import txn_state as ts
from logstore.errors import (
    CommitFailedError,
    ConcurrentTransactionsError,
    InvalidArgumentError,
    InvalidGroupIdError,
    InvalidTxnStateError,
    ProducerFencedError,
    TransactionAbortedError,
    TransactionalIdNotFoundError,
)
from logstore.types import TopicPartition

TID = "tx"
TIMEOUT = 60_000
A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


def unclaimed(completion: ts.Completion) -> ts.Completion:
    """``completion`` without its claim (a claim is taken by whoever writes the markers)."""
    return replace(completion, claim=None)


def off(offset: int, commit_ms: int = 5) -> CommittedOffset:
    return CommittedOffset(offset, "", -1, commit_ms)


class Txn:
    """One transactional id in memory: applies each step's TxnUpdate like the store does,
    records the markers a coordinator would write and the groups' committed offsets."""

    def __init__(self) -> None:
        self.record: TransactionRecord | None = None
        self.committed: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        self.markers: list[tuple[tuple[TopicPartition, ...], int, int, bool]] = []
        self.claims: list[int] = []  # the claim each marker write carried
        self.writes = 0
        self.now = 1_000
        self._ids = itertools.count(1000)

    def allocate(self) -> int:
        return next(self._ids)

    def apply(self, update: TxnUpdate) -> None:
        if update.record is not None:
            version = self.record.version if self.record else 0
            self.record = replace(update.record, version=version + 1)
            self.writes += 1
        for group_id, offsets in update.commit_offsets.items():
            self.committed.setdefault(group_id, {}).update(offsets)

    def run(self, step, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Apply the step's update, then raise a returned protocol outcome."""
        update, result = step(self.record, TID, *args, **kwargs)
        self.apply(update)
        if isinstance(result, Exception):
            raise result
        return result

    def finish(self, completion: ts.Completion) -> bool:
        if completion.claim is None:
            claimed = self.run(ts.claim, completion)
            if claimed is None:
                return False
            completion = claimed
        self.claims.append(completion.claim)
        if completion.partitions:
            self.markers.append((completion.partitions, completion.producer_id,
                                 completion.producer_epoch, completion.commit))
        return self.run(ts.complete, completion, self.now)

    def settle(self, result):  # type: ignore[no-untyped-def]
        """What the coordinator does with a step's result: finish a Completion."""
        if isinstance(result, ts.Completion):
            self.finish(result)
            return result.result
        return result

    # the coordinator's operations, without I/O
    def init(self, timeout_ms: int = TIMEOUT) -> ProducerIdAndEpoch:
        while True:
            result = self.run(ts.init_producer_id, timeout_ms, self.now, self.allocate)
            if isinstance(result, ProducerIdAndEpoch):
                return result
            self.finish(result)

    def add(self, who: ProducerIdAndEpoch, *partitions: TopicPartition) -> None:
        self.run(ts.add_partitions, who.producer_id, who.epoch, partitions, self.now)

    def offsets(self, who: ProducerIdAndEpoch, group_id: str, offsets, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.run(ts.add_offsets, who.producer_id, who.epoch, group_id, offsets, self.now,
                 **kwargs)

    def end(self, who: ProducerIdAndEpoch, commit: bool, *, finish: bool = True,  # type: ignore[no-untyped-def]
            bump: bool = True):
        result = self.run(ts.end_transaction, who.producer_id, who.epoch, commit, self.now,
                          self.allocate, bump=bump)
        return self.settle(result) if finish else result

    def expire(self, *, force: bool = False):  # type: ignore[no-untyped-def]
        return self.run(ts.abort, self.now, self.allocate, force=force)

    @property
    def state(self) -> str:
        assert self.record is not None
        return self.record.state


def ongoing(txn: Txn | None = None) -> tuple[Txn, ProducerIdAndEpoch]:
    txn = txn or Txn()
    who = txn.init()
    txn.add(who, A0, B0)
    return txn, who


# --- init ---------------------------------------------------------------------------------------


def test_init_creates_the_id_with_a_fresh_producer_id_and_epoch_0():
    txn = Txn()
    who = txn.init()
    assert who == ProducerIdAndEpoch(1000, 0)
    assert txn.record == TransactionRecord(TID, 1000, 0, EMPTY, TIMEOUT, update_ms=1_000,
                                           last_bump=BUMP_INIT, version=1)


def test_init_again_bumps_the_epoch_and_fences_the_previous_instance():
    txn = Txn()
    first = txn.init()
    second = txn.init(timeout_ms=5_000)
    assert second == ProducerIdAndEpoch(first.producer_id, 1)
    assert txn.record is not None and txn.record.timeout_ms == 5_000
    assert txn.record.last_bump == BUMP_INIT
    with pytest.raises(ProducerFencedError):
        txn.add(first, A0)
    with pytest.raises(ProducerFencedError):
        txn.end(first, commit=False)
    txn.add(second, A0)
    assert txn.state == ONGOING


def test_init_aborts_an_ongoing_transaction_with_a_bumped_epoch_first():
    txn, old = ongoing()
    txn.offsets(old, "g", {A0: off(7)})
    result = txn.run(ts.init_producer_id, TIMEOUT, txn.now, txn.allocate)
    assert isinstance(result, ts.Completion)
    assert (result.commit, result.producer_epoch, result.partitions) == (False, 1, (A0, B0))
    assert txn.state == PREPARE_ABORT
    with pytest.raises(ProducerFencedError):  # replaced by init: no adoption, even to abort
        txn.end(old, commit=False)
    txn.finish(result)
    new = txn.init()
    assert new == ProducerIdAndEpoch(old.producer_id, 2)
    assert txn.markers == [((A0, B0), old.producer_id, 1, False)]
    assert txn.committed == {}
    assert txn.state == EMPTY and txn.record is not None and txn.record.partitions == frozenset()
    with pytest.raises(ProducerFencedError):
        txn.end(old, commit=True)


@pytest.mark.parametrize("commit", [True, False])
def test_init_finishes_a_prepared_transaction_as_decided(commit):
    txn, who = ongoing()
    txn.offsets(who, "g", {A0: off(3)})
    prepared = txn.end(who, commit, finish=False)  # the markers were never written (crash)
    assert txn.state == (PREPARE_COMMIT if commit else PREPARE_ABORT)
    result = txn.run(ts.init_producer_id, TIMEOUT, txn.now, txn.allocate)
    assert unclaimed(result) == unclaimed(prepared)
    assert txn.writes == 4  # nothing written: init finishes it first, with a claim of its own
    new = txn.init()
    assert txn.markers == [((A0, B0), who.producer_id, who.epoch + 1, commit)]
    assert new == ProducerIdAndEpoch(who.producer_id, who.epoch + 2)
    assert txn.committed == ({"g": {A0: off(3)}} if commit else {})


def test_init_past_the_last_epoch_allocates_a_new_producer_id():
    txn = Txn()
    txn.init()
    assert txn.record is not None
    txn.record = replace(txn.record, producer_epoch=MAX_PRODUCER_EPOCH - 2)
    assert txn.init() == ProducerIdAndEpoch(1000, MAX_PRODUCER_EPOCH - 1)
    assert txn.init() == ProducerIdAndEpoch(1001, 0)  # 32767 is for markers only
    with pytest.raises(ProducerFencedError):
        txn.add(ProducerIdAndEpoch(1000, MAX_PRODUCER_EPOCH - 1), A0)


# --- adding to a transaction --------------------------------------------------------------------


def test_add_partitions_begins_a_transaction_and_adds_to_it():
    txn = Txn()
    who = txn.init()
    txn.now = 2_000
    txn.add(who, A0)
    assert txn.record is not None
    assert (txn.state, txn.record.partitions, txn.record.start_ms) == (ONGOING, {A0}, 2_000)
    txn.now = 3_000
    txn.add(who, A1, A0)
    assert txn.record.partitions == {A0, A1} and txn.record.start_ms == 2_000
    writes = txn.writes
    txn.add(who, A1)
    assert txn.writes == writes  # nothing new: nothing written


def test_add_offsets_begins_a_transaction_and_later_offsets_win():
    txn = Txn()
    who = txn.init()
    txn.offsets(who, "g", {A0: off(1), A1: off(1)})
    assert txn.state == ONGOING and txn.record is not None and txn.record.partitions == set()
    txn.offsets(who, "g", {A0: off(9)})
    txn.offsets(who, "h", {B0: CommittedOffset(4)})
    assert txn.record.pending_offsets == {
        "g": {A0: off(9), A1: off(1)},
        "h": {B0: CommittedOffset(4, commit_ms=txn.now)},  # stamped when sent
    }
    assert txn.committed == {}


def test_unknown_transactional_id_must_init_first():
    with pytest.raises(TransactionalIdNotFoundError):
        Txn().add(ProducerIdAndEpoch(1000, 0), A0)
    with pytest.raises(TransactionalIdNotFoundError):
        Txn().end(ProducerIdAndEpoch(1000, 0), commit=False)


def test_a_wrong_producer_id_or_epoch_is_fenced():
    txn = Txn()
    who = txn.init()
    for other in (ProducerIdAndEpoch(who.producer_id + 1, 0), ProducerIdAndEpoch(1000, 1)):
        with pytest.raises(ProducerFencedError):
            txn.add(other, A0)
        with pytest.raises(ProducerFencedError):
            txn.offsets(other, "g", {A0: off(1)})
    assert txn.state == EMPTY and txn.writes == 1


def test_adding_while_the_previous_transaction_completes_is_retriable():
    txn, who = ongoing()
    prepared = txn.end(who, commit=True, finish=False)
    txn.record = replace(txn.record, producer_epoch=who.epoch + 1)  # type: ignore[arg-type]
    current = ProducerIdAndEpoch(who.producer_id, who.epoch + 1)
    with pytest.raises(ConcurrentTransactionsError) as info:
        txn.add(current, A1)
    assert info.value.retriable
    with pytest.raises(ConcurrentTransactionsError):
        txn.end(current, commit=True)
    assert prepared.result == current


# --- ending --------------------------------------------------------------------------------------


def test_commit_prepares_with_a_bumped_epoch_then_completes_with_the_offsets():
    txn, who = ongoing()
    txn.offsets(who, "g", {A0: off(11)})
    result = txn.end(who, commit=True, finish=False)
    assert isinstance(result, ts.Completion)
    assert txn.record is not None and txn.state == PREPARE_COMMIT
    assert (txn.record.producer_epoch, txn.record.last_bump) == (who.epoch + 1, BUMP_END)
    assert txn.record.previous_identity == who
    assert (result.partitions, result.producer_id, result.producer_epoch, result.commit) == (
        (A0, B0), who.producer_id, who.epoch + 1, True)
    assert txn.committed == {}  # not before the markers are written
    assert txn.finish(result) is True
    assert txn.state == COMPLETE_COMMIT and txn.committed == {"g": {A0: off(11)}}
    assert txn.record.partitions == frozenset() and txn.record.pending_offsets == {}
    nxt = result.result
    assert nxt == ProducerIdAndEpoch(who.producer_id, who.epoch + 1)
    txn.add(nxt, A1)  # the next transaction uses the returned epoch
    assert txn.state == ONGOING and txn.record.partitions == {A1}
    with pytest.raises(ProducerFencedError):
        txn.add(who, A1)


def test_abort_drops_the_pending_offsets():
    txn, who = ongoing()
    txn.offsets(who, "g", {A0: off(11)})
    nxt = txn.end(who, commit=False)
    assert txn.state == COMPLETE_ABORT and txn.committed == {}
    assert txn.markers == [((A0, B0), who.producer_id, who.epoch + 1, False)]
    txn.offsets(nxt, "g", {A0: off(12)})
    txn.end(nxt, commit=True)
    assert txn.committed == {"g": {A0: off(12)}}


def test_a_transaction_without_partitions_completes_without_markers():
    txn = Txn()
    who = txn.init()
    txn.add(who)
    nxt = txn.end(who, commit=True)
    assert txn.state == COMPLETE_COMMIT and txn.markers == []
    assert nxt.epoch == who.epoch + 1
    txn.offsets(nxt, "g", {A0: off(2)})
    txn.end(nxt, commit=True)
    assert txn.markers == [] and txn.committed == {"g": {A0: off(2)}}


def test_commit_without_a_transaction_is_invalid_and_abort_is_a_no_op():
    txn = Txn()
    who = txn.init()
    with pytest.raises(InvalidTxnStateError):
        txn.end(who, commit=True)
    assert txn.end(who, commit=False) == who and txn.writes == 1
    txn.add(who, A0)
    nxt = txn.end(who, commit=True)
    with pytest.raises(InvalidTxnStateError):
        txn.end(nxt, commit=True)
    assert txn.end(nxt, commit=False) == nxt and txn.state == COMPLETE_COMMIT


@pytest.mark.parametrize("commit", [True, False])
def test_end_retried_by_the_same_producer_is_idempotent(commit):
    txn, who = ongoing()
    txn.offsets(who, "g", {A0: off(5)})
    first = txn.end(who, commit, finish=False)  # the markers failed: still prepared
    again = txn.end(who, commit, finish=False)
    assert unclaimed(again) == unclaimed(first) and txn.writes == 4
    assert txn.settle(again) == first.result
    writes = txn.writes
    assert txn.end(who, commit) == first.result  # retried after completion: same answer
    assert txn.writes == writes and len(txn.markers) == 1
    assert txn.committed == ({"g": {A0: off(5)}} if commit else {})
    with pytest.raises(InvalidTxnStateError):
        txn.end(who, not commit)  # the other decision was taken
    with pytest.raises(ProducerFencedError):
        txn.add(who, A1)  # the old epoch may only retry the end


def test_the_other_decision_is_refused_while_prepared():
    txn, who = ongoing()
    txn.end(who, commit=True, finish=False)
    with pytest.raises(InvalidTxnStateError):
        txn.end(who, commit=False)
    assert txn.state == PREPARE_COMMIT


def test_complete_is_a_compare_and_swap():
    txn, who = ongoing()
    txn.offsets(who, "g", {A0: off(5)})
    completion = txn.end(who, commit=True, finish=False)
    stale = replace(completion, producer_epoch=completion.producer_epoch - 1)
    assert txn.run(ts.complete, stale, txn.now) is False
    assert txn.state == PREPARE_COMMIT
    assert txn.finish(completion) is True
    assert txn.finish(completion) is False  # a racing finisher: already done, nothing written
    assert txn.committed == {"g": {A0: off(5)}} and txn.writes == 5


def test_commit_past_the_last_epoch_hands_out_a_new_producer_id():
    txn = Txn()
    txn.init()
    assert txn.record is not None
    txn.record = replace(txn.record, producer_epoch=MAX_PRODUCER_EPOCH - 1)
    who = ProducerIdAndEpoch(1000, MAX_PRODUCER_EPOCH - 1)
    txn.add(who, A0)
    completion = txn.end(who, commit=True, finish=False)
    assert (completion.producer_id, completion.producer_epoch) == (1000, MAX_PRODUCER_EPOCH)
    assert completion.result == ProducerIdAndEpoch(1001, 0)
    assert txn.record.next_producer_id == 1001
    assert txn.settle(completion) == ProducerIdAndEpoch(1001, 0)
    assert txn.markers == [((A0,), 1000, MAX_PRODUCER_EPOCH, True)]
    assert txn.record.identity == ProducerIdAndEpoch(1001, 0)
    assert txn.record.next_producer_id == NO_PRODUCER_ID
    assert txn.end(who, commit=True) == ProducerIdAndEpoch(1001, 0)  # a retry, same answer
    nxt = ProducerIdAndEpoch(1001, 0)
    txn.add(nxt, A1)
    assert txn.end(nxt, commit=False) == ProducerIdAndEpoch(1001, 1)
    with pytest.raises(ProducerFencedError):
        txn.add(who, A0)


# --- timeouts ------------------------------------------------------------------------------------


def test_a_timed_out_transaction_is_aborted_and_its_producer_may_adopt_the_epoch():
    txn, who = ongoing()
    txn.offsets(who, "g", {A0: off(5)})
    txn.now += TIMEOUT
    assert txn.expire() is None  # not yet: start + timeout is not in the past
    txn.now += 1
    completion = txn.expire()
    assert txn.record is not None and txn.state == PREPARE_ABORT
    assert (txn.record.last_bump, completion.producer_epoch) == (BUMP_TIMEOUT, who.epoch + 1)
    txn.finish(completion)
    assert txn.markers == [((A0, B0), who.producer_id, who.epoch + 1, False)]
    assert txn.committed == {}
    for call in (lambda: txn.add(who, A1), lambda: txn.offsets(who, "g", {A0: off(6)}),
                 lambda: txn.end(who, commit=True)):
        with pytest.raises(TransactionAbortedError) as info:
            call()
        assert not info.value.retriable
    adopted = txn.end(who, commit=False)
    assert adopted == ProducerIdAndEpoch(who.producer_id, who.epoch + 1)
    assert txn.end(who, commit=False) == adopted  # aborting again answers the same
    txn.add(adopted, A1)
    assert txn.end(adopted, commit=True) == ProducerIdAndEpoch(who.producer_id, who.epoch + 2)
    assert txn.state == COMPLETE_COMMIT


def test_adoption_finishes_an_abort_whose_markers_failed():
    txn, who = ongoing()
    txn.now += TIMEOUT + 1
    completion = txn.expire()  # markers never written
    result = txn.end(who, commit=False, finish=False)
    assert unclaimed(result) == unclaimed(completion)
    assert txn.settle(result) == ProducerIdAndEpoch(who.producer_id, who.epoch + 1)
    assert txn.state == COMPLETE_ABORT and len(txn.markers) == 1


def test_after_a_timeout_an_init_fences_the_old_producer_for_good():
    txn, who = ongoing()
    txn.now += TIMEOUT + 1
    txn.finish(txn.expire())
    new = txn.init()
    assert new == ProducerIdAndEpoch(who.producer_id, who.epoch + 2)
    with pytest.raises(ProducerFencedError):
        txn.end(who, commit=False)
    with pytest.raises(ProducerFencedError):
        txn.add(who, A0)


def test_only_ongoing_transactions_time_out():
    txn = Txn()
    who = txn.init()
    txn.now += 10 * TIMEOUT
    assert txn.expire() is None
    txn.add(who, A0)
    txn.end(who, commit=True)
    txn.now += 10 * TIMEOUT
    assert txn.expire() is None and txn.state == COMPLETE_COMMIT


def test_force_abort_aborts_like_a_timeout_and_leaves_completed_ones_alone():
    txn, who = ongoing()
    completion = txn.expire(force=True)
    assert txn.record is not None and txn.record.last_bump == BUMP_TIMEOUT
    txn.finish(completion)
    assert txn.expire(force=True) is None and txn.state == COMPLETE_ABORT
    with pytest.raises(TransactionAbortedError):
        txn.end(who, commit=True)
    with pytest.raises(TransactionalIdNotFoundError):
        Txn().expire(force=True)


def test_force_abort_finishes_a_prepared_commit_as_decided():
    txn, who = ongoing()
    prepared = txn.end(who, commit=True, finish=False)
    assert unclaimed(txn.expire(force=True)) == unclaimed(prepared)
    assert txn.expire() is None  # the timeout pass leaves prepared ones to complete_pending


# --- classic ends and claims ---------------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_a_classic_end_keeps_the_producer_identity(commit):
    txn, who = ongoing()
    txn.offsets(who, "g", {A0: off(7)})
    assert txn.end(who, commit, bump=False) == who
    assert txn.markers == [((A0, B0), who.producer_id, who.epoch, commit)]  # its own epoch
    assert txn.record is not None and txn.record.last_bump == BUMP_INIT
    assert txn.committed == ({"g": {A0: off(7)}} if commit else {})
    txn.add(who, A1)  # the same identity runs the next transaction
    assert txn.state == ONGOING
    assert txn.end(who, commit=True, bump=False) == who
    assert [m[2] for m in txn.markers] == [who.epoch, who.epoch]


@pytest.mark.parametrize("commit", [True, False])
def test_a_classic_end_retried_finishes_the_work_or_finds_it_done(commit):
    txn, who = ongoing()
    first = txn.end(who, commit, finish=False, bump=False)  # the markers failed
    retry = txn.end(who, commit, finish=False, bump=False)
    assert unclaimed(retry) == unclaimed(first) and retry.claim is None
    assert txn.settle(retry) == who and txn.state == (COMPLETE_COMMIT if commit
                                                      else COMPLETE_ABORT)
    writes = txn.writes
    assert txn.end(who, commit, bump=False) == who and txn.writes == writes  # a lost answer
    with pytest.raises(InvalidTxnStateError):
        txn.end(who, not commit, bump=False)


def test_only_the_latest_claim_completes():
    txn, who = ongoing()
    first = txn.end(who, commit=True, finish=False, bump=False)
    later = txn.run(ts.claim, first)  # another process finishes it (a retry, recovery)
    assert later is not None and first.claim is not None and later.claim == first.claim + 1
    assert txn.run(ts.complete, first, txn.now) is False, "an earlier claimant must not"
    assert txn.state == PREPARE_COMMIT
    assert txn.run(ts.complete, later, txn.now) is True and txn.state == COMPLETE_COMMIT
    assert txn.run(ts.claim, later) is None  # nothing left to claim


# --- KIP-447 -------------------------------------------------------------------------------------


def _group(generation: int, *members: tuple[str, int]) -> GroupSnapshot:
    return GroupSnapshot(
        GroupRecord("g", generation=generation, state="Stable"),
        tuple(MemberRecord(m, None, "c", 10_000, 30_000, (("range", b""),), join_generation=j)
              for m, j in members),
    )


def test_offsets_from_a_current_member_are_accepted():
    txn = Txn()
    who = txn.init()
    txn.offsets(who, "g", {A0: off(1)}, group=_group(3, ("m1", 3)), member_id="m1",
                generation=3)
    assert txn.record is not None and txn.record.pending_offsets == {"g": {A0: off(1)}}


@pytest.mark.parametrize("group,member,generation", [
    (_group(3, ("m1", 3)), "m1", 2),  # a zombie of an older generation
    (_group(4, ("m1", 3)), "m1", 3),  # a rebalance completed without it
    (_group(3, ("m1", 3)), "m2", 3),  # removed from the group
    (GroupSnapshot(None), "m1", 0),  # no such group
])
def test_offsets_from_a_fenced_member_are_refused_and_nothing_is_stored(group, member,
                                                                         generation):
    txn = Txn()
    who = txn.init()
    with pytest.raises(CommitFailedError):
        txn.offsets(who, "g", {A0: off(1)}, group=group, member_id=member,
                    generation=generation)
    assert txn.state == EMPTY and txn.writes == 1


def test_without_member_and_generation_the_group_is_not_checked():
    assert ts.check_group_member(GroupSnapshot(None), "g", "", -1) is None


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, 900_001, True, 1.5, "60000"])
def test_timeouts_outside_1_to_900000_ms_are_refused(timeout):
    with pytest.raises(InvalidArgumentError):
        Txn().init(timeout_ms=timeout)


def test_bad_partitions_offsets_groups_and_identities_are_refused():
    txn = Txn()
    who = txn.init()
    for bad in (("a", 0), TopicPartition("", 0), TopicPartition("a", -1),
                TopicPartition("a", True)):
        with pytest.raises(InvalidArgumentError):
            txn.add(who, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        txn.run(ts.add_partitions, who.producer_id, who.epoch, A0, txn.now)
    with pytest.raises(InvalidArgumentError):
        txn.offsets(who, "g", {A0: 5})
    for bad_offset in (CommittedOffset(-1), CommittedOffset(1, None), CommittedOffset(1.5),
                       CommittedOffset(1, "", "e"), CommittedOffset(1, commit_ms=True)):
        with pytest.raises(InvalidArgumentError):
            txn.offsets(who, "g", {A0: bad_offset})
    with pytest.raises(InvalidGroupIdError):
        txn.offsets(who, "", {A0: off(1)})
    for producer_id, epoch in ((-1, 0), (1000, -1), (1000, MAX_PRODUCER_EPOCH + 1),
                               (1000, True)):
        with pytest.raises(InvalidArgumentError):
            txn.add(ProducerIdAndEpoch(producer_id, epoch), A0)
    with pytest.raises(InvalidArgumentError):
        txn.run(ts.end_transaction, who.producer_id, who.epoch, "yes", txn.now, txn.allocate)
    assert txn.state == EMPTY and txn.writes == 1
