"""Producer state in a partition: duplicates, sequences, epochs, transactions and the LSO."""

from __future__ import annotations

import pytest

from logstore.errors import (
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    ProducerFencedError,
    UnknownProducerIdError,
)
from logstore.log.producer_state import claim_after
from logstore.records.builder import encode_batch
from logstore.records.control import ControlType, build_control_batch
from logstore.records.header import iter_headers
from logstore.types import IsolationLevel

PID = 4242


def batch(values, *, seq: int, epoch: int = 0, pid: int = PID, txn: bool = False) -> bytes:
    return encode_batch([(1000, None, v, ()) for v in values], producer_id=pid,
                        producer_epoch=epoch, base_sequence=seq, is_transactional=txn)


def marker(kind: ControlType, *, epoch: int, pid: int = PID, claim: int = 0) -> bytes:
    return build_control_batch(kind, producer_id=pid, producer_epoch=epoch,
                               coordinator_epoch=claim, timestamp_ms=2000)


def offsets(log) -> list[int]:  # type: ignore[no-untyped-def]
    data = log.read(log.log_start_offset, max_bytes=1 << 24).records
    return [h.base_offset for _, h in iter_headers(data)]


def test_a_retried_batch_gets_its_original_offsets_and_is_not_written_twice(partitions):
    log = partitions.open()
    first = log.append(batch([b"a", b"b"], seq=0))
    second = log.append(batch([b"c"], seq=2))
    retry = log.append(batch([b"a", b"b"], seq=0))
    assert (retry.base_offset, retry.last_offset, retry.duplicate) == (0, 1, True)
    assert not first.duplicate and second.base_offset == 2
    assert log.log_end_offset() == 3 and offsets(log) == [0, 2]


def test_only_the_last_five_batches_are_recognised(partitions):
    log = partitions.open()
    for seq in range(7):
        log.append(batch([b"x"], seq=seq))
    assert log.append(batch([b"x"], seq=2)).duplicate
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch([b"x"], seq=1))  # too old to be recognised


def test_sequence_gaps_and_stale_epochs_are_rejected(partitions):
    log = partitions.open()
    log.append(batch([b"a"], seq=0))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch([b"b"], seq=2))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch([b"b"], seq=5, epoch=1))  # a new epoch starts at 0
    log.append(batch([b"b"], seq=0, epoch=1))
    with pytest.raises(ProducerFencedError):
        log.append(batch([b"c"], seq=1, epoch=0))
    with pytest.raises(UnknownProducerIdError):
        log.append(batch([b"z"], seq=3, pid=99))  # unknown producer: must start at 0
    assert log.log_end_offset() == 2


def test_sequences_wrap_around(partitions):
    log = partitions.open()
    top = (1 << 31) - 2
    log.append(batch([b"a"], seq=0, epoch=3))
    for seq in range(1, 4):
        log.append(batch([b"x"], seq=seq, epoch=3))
    state = log.producer_states()[PID]
    assert state.last_sequence == 3
    # jump the stored sequence near the top by hand to test the wrap rule itself
    from logstore.log.producer_state import BatchMetadata, ProducerEntry, apply
    from logstore.records.header import parse_header

    near_top = ProducerEntry(PID, 3, top, (BatchMetadata(top, top, 10, 10, 0),))
    wrapping = parse_header(batch([b"y", b"z", b"w"], seq=top + 1, epoch=3))
    outcome = apply(near_top, wrapping, 11)
    assert outcome.entry is not None and outcome.entry.last_sequence == 1
    after = parse_header(batch([b"v"], seq=2, epoch=3))
    assert apply(outcome.entry, after, 14).entry.last_sequence == 2


def test_a_group_commit_decides_every_batch_on_its_own(partitions):
    log = partitions.open()
    results = log.append_each([batch([b"a"], seq=0), batch([b"b"], seq=7),
                               batch([b"c"], seq=1), batch([b"a"], seq=0)])
    assert results[0].base_offset == 0
    assert isinstance(results[1], OutOfOrderSequenceError)
    assert results[2].base_offset == 1
    assert results[3].duplicate and results[3].base_offset == 0
    assert log.log_end_offset() == 2


def test_state_survives_reopen_rolls_and_other_handles(partitions):
    partitions.configure(segment_bytes=300)
    log = partitions.open()
    for seq in range(10):
        log.append(batch([b"v" * 60], seq=seq))
    assert len(log.segment_bases()) > 2, "rolls happened"
    other = partitions.open()
    assert other.append(batch([b"v" * 60], seq=9)).duplicate  # seen from another handle
    other.append(batch([b"v" * 60], seq=10))
    log.close()
    reopened = partitions.open()
    assert reopened.append(batch([b"v" * 60], seq=10)).duplicate
    with pytest.raises(OutOfOrderSequenceError):
        reopened.append(batch([b"v"], seq=12))


def test_idle_producers_expire_when_a_segment_rolls(partitions, clock):
    partitions.configure(segment_ms=30 * 24 * 3600 * 1000)  # no time-based roll in between
    log = partitions.open()
    log.append(batch([b"v" * 100], seq=0))
    log.append(batch([b"v" * 100], seq=0, pid=7))
    clock.advance(8 * 24 * 3600 * 1000)
    log.append(encode_batch([(clock.time_ms(), None, b"w" * 100, ())], producer_id=7,
                            producer_epoch=0, base_sequence=1))
    log.roll()
    assert set(log.producer_states()) == {7}, "the idle producer's state was dropped"
    with pytest.raises(UnknownProducerIdError):
        log.append(batch([b"v"], seq=1))  # the expired producer's next sequence
    assert log.append(batch([b"v"], seq=0, epoch=1)).base_offset == 3, "a new epoch is taken"


def test_an_unknown_producer_id_is_told_apart_from_a_sequence_gap(partitions):
    log = partitions.open()
    results = log.append_each([batch([b"a"], seq=4), batch([b"b"], seq=5),
                               batch([b"c"], seq=4, txn=True, pid=8)])
    assert [type(r) for r in results] == [UnknownProducerIdError] * 3, "nothing is known"
    log.append(batch([b"a"], seq=0))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch([b"b"], seq=5))  # a known producer with a gap
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch([b"b"], seq=3, epoch=1))  # a known producer's new epoch starts at 0
    # A marker for a producer without state is written (its transaction may have written no
    # batch here); afterwards the producer is known at the marker's epoch.
    assert log.append(marker(ControlType.ABORT, epoch=1, pid=8)).base_offset == 1
    assert log.append(batch([b"c"], seq=0, epoch=1, txn=True, pid=8)).base_offset == 2
    assert log.log_end_offset() == 3


def test_an_open_transaction_holds_the_last_stable_offset(partitions):
    log = partitions.open()
    log.append(batch([b"plain"], seq=0, pid=1))
    log.append(batch([b"t1", b"t2"], seq=0, txn=True))
    log.append(batch([b"plain2"], seq=1, pid=1))
    assert log.last_stable_offset == 1 and log.high_watermark == 4
    committed = log.read(0, max_bytes=1 << 20, isolation=IsolationLevel.READ_COMMITTED)
    assert [h.base_offset for _, h in iter_headers(committed.records)] == [0]
    assert committed.last_stable_offset == 1
    log.append(marker(ControlType.COMMIT, epoch=1))
    assert log.last_stable_offset == log.high_watermark == 5
    assert log.read(0, max_bytes=1 << 20, isolation=IsolationLevel.READ_COMMITTED).aborted == ()


def test_an_aborted_transaction_is_listed_for_read_committed_readers(partitions):
    partitions.configure(segment_bytes=250)
    log = partitions.open()
    log.append(batch([b"a" * 50], seq=0, txn=True))
    log.append(batch([b"b" * 50], seq=1, txn=True))
    log.append(batch([b"x" * 50], seq=0, pid=5))
    log.append(batch([b"c" * 50], seq=2, txn=True))
    log.append(marker(ControlType.ABORT, epoch=1))
    result = log.read(0, max_bytes=1 << 20, isolation=IsolationLevel.READ_COMMITTED)
    assert [(a.producer_id, a.first_offset, a.last_offset) for a in result.aborted] == [
        (PID, 0, 4)]
    later = log.read(2, max_bytes=1 << 20, isolation=IsolationLevel.READ_COMMITTED)
    assert [a.first_offset for a in later.aborted] == [0], "found from a later start too"
    assert log.append(marker(ControlType.ABORT, epoch=1)).duplicate
    with pytest.raises(ProducerFencedError):
        log.append(batch([b"late"], seq=3, epoch=0, txn=True))  # the marker fenced epoch 0


def test_truncation_rebuilds_producer_state_and_the_aborted_index(partitions):
    log = partitions.open()
    log.append(batch([b"a"], seq=0, txn=True))
    log.append(marker(ControlType.ABORT, epoch=1))
    log.append(batch([b"b"], seq=0, epoch=1, txn=True))
    log.append(batch([b"c"], seq=1, epoch=1, txn=True))
    log.truncate_to(3)
    state = log.producer_states()[PID]
    assert (state.epoch, state.last_sequence, state.txn_first_offset) == (1, 0, 2)
    assert log.last_stable_offset == 2
    log.truncate_to(1)
    state = log.producer_states()[PID]
    assert (state.epoch, state.txn_first_offset) == (0, 0)
    assert log.read(0, max_bytes=1 << 20, isolation=IsolationLevel.READ_COMMITTED).batches == []
    assert log.append(batch([b"a"], seq=0, txn=True)).duplicate, "state as before the marker"


def test_a_late_duplicate_marker_does_not_end_the_next_transaction(partitions):
    log = partitions.open()
    log.append(batch([b"n"], seq=0, txn=True))
    log.append(marker(ControlType.COMMIT, epoch=1))  # transaction N ends; the epoch is now 1
    log.append(batch([b"n+1"], seq=0, epoch=1, txn=True))  # transaction N+1 at epoch 1
    stable = log.last_stable_offset
    # Another process finishing transaction N again writes its marker once more:
    assert log.append(marker(ControlType.COMMIT, epoch=1)).duplicate
    assert log.last_stable_offset == stable == 2, "transaction N+1 must still be open"


# --- classic transactions (EndTxn before v5: markers at the producer's own epoch) ----------------


def test_a_classic_marker_ends_the_transaction_and_the_producer_goes_on(partitions):
    log = partitions.open()
    log.append(batch([b"t1"], seq=0, epoch=3, txn=True))
    log.append(marker(ControlType.COMMIT, epoch=3, claim=10))
    assert log.last_stable_offset == log.high_watermark == 2
    log.append(batch([b"t2"], seq=1, epoch=3, txn=True))  # sequences go on across transactions
    assert log.last_stable_offset == 2
    with pytest.raises(OutOfOrderSequenceError):
        log.append(batch([b"t2 gap"], seq=5, epoch=3, txn=True))
    assert log.append(batch([b"t2"], seq=1, epoch=3, txn=True)).duplicate  # a retry
    log.append(marker(ControlType.ABORT, epoch=3, claim=14))
    result = log.read(0, max_bytes=1 << 20, isolation=IsolationLevel.READ_COMMITTED)
    assert [(a.first_offset, a.last_offset) for a in result.aborted] == [(2, 3)]
    state = log.producer_states()[PID]
    assert (state.epoch, state.last_sequence, state.marker_claim) == (3, 1, 14)


def test_a_stalled_claimant_cannot_end_the_next_classic_transaction(partitions):
    """Two claims on transaction N: the later one (12) wrote its marker and completed, and
    transaction N+1 began; the earlier claimant's (11) marker arrives late."""
    log = partitions.open()
    log.append(batch([b"n"], seq=0, txn=True))
    log.append(marker(ControlType.COMMIT, epoch=0, claim=12))
    log.append(batch([b"n+1"], seq=1, txn=True))
    assert log.append(marker(ControlType.COMMIT, epoch=0, claim=11)).duplicate
    assert log.append(marker(ControlType.COMMIT, epoch=0, claim=12)).duplicate
    assert log.last_stable_offset == 2, "transaction N+1 must still be open"
    log.append(marker(ControlType.ABORT, epoch=0, claim=15))  # N+1's own end
    assert log.last_stable_offset == log.high_watermark == 4
    aborted = log.read(0, max_bytes=1 << 20, isolation=IsolationLevel.READ_COMMITTED).aborted
    assert [(a.first_offset, a.last_offset) for a in aborted] == [(2, 3)]  # no stale marker


def test_claims_survive_truncation_and_reopening(partitions):
    log = partitions.open()
    log.append(batch([b"n"], seq=0, txn=True))
    log.append(marker(ControlType.COMMIT, epoch=0, claim=7))
    log.append(batch([b"n+1"], seq=1, txn=True))
    log.append(batch([b"n+1 more"], seq=2, txn=True))
    log.truncate_to(3)  # rebuilt from the snapshot and the batches, markers included
    assert log.producer_states()[PID].marker_claim == 7
    log.close()
    log = partitions.open()
    assert log.append(marker(ControlType.COMMIT, epoch=0, claim=6)).duplicate
    assert log.last_stable_offset == 2


def test_a_batch_verified_before_a_later_marker_is_refused(partitions):
    """The broker verified transaction N+1 at claim 20; a marker claimed after that (21) ended
    it before the batch arrived: the late batch must not open a transaction."""
    log = partitions.open()
    log.append(batch([b"n"], seq=0, txn=True))
    log.append(marker(ControlType.COMMIT, epoch=0, claim=18))
    log.append(batch([b"n+1"], seq=1, txn=True), verified_claim=20)  # the marker is older
    log.append(marker(ControlType.ABORT, epoch=0, claim=21))
    with pytest.raises(InvalidTxnStateError):
        log.append(batch([b"late"], seq=2, txn=True), verified_claim=20)
    assert log.last_stable_offset == log.high_watermark == 4
    log.append(batch([b"plain"], seq=2), verified_claim=20)  # not transactional: no guard


def test_claims_compare_as_serial_numbers():
    top = (1 << 31) - 1
    assert claim_after(5, 4) and not claim_after(4, 5) and not claim_after(4, 4)
    assert claim_after(1, top) and not claim_after(top, 1)  # wrapped around
    assert claim_after(0, -1) and not claim_after(-1, -1) and not claim_after(-1, 0)


def test_segments_of_format_2_are_upgraded_when_opened(partitions):
    """Format 3 added ``marker_claim``; a data directory written before keeps working."""
    import apsw

    from logstore.log.segment_format import FORMAT_VERSION, segment_file_name

    log = partitions.open()
    log.append(batch([b"a"], seq=0, txn=True))
    log.append(marker(ControlType.COMMIT, epoch=1))
    log.close()
    path = partitions.directory / segment_file_name(0)
    old = apsw.Connection(str(path))
    old.execute("ALTER TABLE producers DROP COLUMN marker_claim;"
                "ALTER TABLE producer_snapshot DROP COLUMN marker_claim;"
                "PRAGMA user_version = 2;")
    old.close()
    log = partitions.open()
    state = log.producer_states()[PID]
    assert (state.epoch, state.last_sequence, state.marker_claim) == (1, -1, -1)
    log.append(batch([b"b"], seq=0, epoch=1))
    check = apsw.Connection(str(path))
    assert check.execute("PRAGMA user_version").get == FORMAT_VERSION == 3
    check.close()
    assert log.producer_states()[PID].last_sequence == 0
