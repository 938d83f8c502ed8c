"""Control records (transaction markers): encoding, parsing, control batches."""

from __future__ import annotations

import pytest

from logstore.errors import CorruptRecordError, InvalidArgumentError
from logstore.records import (
    ControlRecord,
    ControlType,
    build_control_batch,
    decode_batch,
    encode_control,
    parse_control,
    validate_batch,
)


def test_encoding_matches_kafka_end_transaction_marker() -> None:
    assert encode_control(ControlType.ABORT, 5) == (
        b"\x00\x00\x00\x00",
        b"\x00\x00\x00\x00\x00\x05",
    )
    assert encode_control(ControlType.COMMIT, -1) == (
        b"\x00\x00\x00\x01",
        b"\x00\x00\xff\xff\xff\xff",
    )


@pytest.mark.parametrize("control_type", list(ControlType))
def test_control_batch_round_trip(control_type: ControlType) -> None:
    raw = build_control_batch(
        control_type, producer_id=11, producer_epoch=4, coordinator_epoch=9, timestamp_ms=1234
    )
    header = validate_batch(raw)
    assert header.is_control and header.is_transactional and header.compression == 0
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (11, 4, -1)
    assert header.partition_leader_epoch == -1 and header.record_count == 1
    _, (record,) = decode_batch(raw)
    assert record.timestamp_ms == 1234 and record.headers == ()
    parsed = parse_control(record.key, record.value)
    assert parsed == ControlRecord(control_type, 0, 9)
    assert parsed.is_commit is (control_type is ControlType.COMMIT)
    assert parsed.is_abort is (control_type is ControlType.ABORT)


def test_newer_versions_and_unknown_types_are_tolerated() -> None:
    parsed = parse_control(b"\x00\x01\x00\x01extra", b"\x00\x01\x00\x00\x00\x07extra")
    assert parsed == ControlRecord(ControlType.COMMIT, 1, 7)
    # KRaft control types (e.g. 2 = LEADER_CHANGE) parse without a marker value.
    assert parse_control(b"\x00\x00\x00\x02", b"anything") == ControlRecord(2, 0, -1)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (None, b"\x00\x00\x00\x00\x00\x00"),
        (b"\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00"),
        (b"\xff\xff\x00\x01", b"\x00\x00\x00\x00\x00\x00"),  # negative key version
        (b"\x00\x00\x00\x01", None),
        (b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00"),
        (b"\x00\x00\x00\x00", b"\x80\x00\x00\x00\x00\x00"),  # negative value version
    ],
)
def test_malformed_control_records(key: bytes | None, value: bytes | None) -> None:
    with pytest.raises(CorruptRecordError):
        parse_control(key, value)


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidArgumentError):
        encode_control(3, 0)
    with pytest.raises(InvalidArgumentError):
        encode_control(ControlType.COMMIT, 2**31)
