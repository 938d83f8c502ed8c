"""Byte compatibility with kafka-python's RecordBatch v2 implementation, in both directions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import (
    ControlRecord as KafkaControlRecord,
)
from kafka.record.default_records import (
    DefaultRecordBatch,
    DefaultRecordBatchBuilder,
)
from kafka.record.memory_records import MemoryRecords

from logstore.records import (
    BatchBuilder,
    Compression,
    ControlType,
    build_control_batch,
    decode_batch,
    encode_control,
    iter_records,
    parse_control,
    set_base_offset,
    write_crc,
)
from logstore.records.header import ATTRIBUTES_OFFSET, CONTROL_MASK, parse_header

Row = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]

BASE_TS = 1_700_000_000_000
# Compressible values so kafka-python keeps compression (it falls back to none otherwise).
ROWS: list[Row] = [
    (BASE_TS, b"key-0", b"value " * 40, ()),
    (BASE_TS + 5, None, b"value " * 40, (("trace", b"abc"), ("null", None))),
    (BASE_TS - 3_000, b"key-2", None, ()),  # tombstone with a negative timestamp delta
    (BASE_TS + 10**9, b"", b"", (("\u00e9t\u00e9 \u2603", b""),)),
    (BASE_TS + 1, bytes(range(256)), b"value " * 400, ()),
]
PRODUCER = {"producer_id": 4242, "producer_epoch": 7, "base_sequence": 100}
PRODUCER_CASES = [
    pytest.param({"producer_id": -1, "producer_epoch": -1, "base_sequence": -1}, False, id="plain"),
    pytest.param(PRODUCER, False, id="idempotent"),
    pytest.param(PRODUCER, True, id="transactional"),
]


def kafka_build(rows: Sequence[Row], codec: int, producer: dict[str, int], txn: bool) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=txn,
        batch_size=1 << 30,
        **producer,
    )
    for offset, (ts, key, value, headers) in enumerate(rows):
        builder.append(offset, timestamp=ts, key=key, value=value, headers=list(headers))
    return bytes(builder.build())


def ours_build(rows: Sequence[Row], codec: int, producer: dict[str, int], txn: bool) -> bytes:
    # kafka-python writes partitionLeaderEpoch 0 (Java producers write -1): match it.
    builder = BatchBuilder(
        compression=codec, is_transactional=txn, partition_leader_epoch=0, **producer
    )
    for ts, key, value, headers in rows:
        builder.append(ts, key, value, headers)
    return builder.build()


def kafka_view(batch: DefaultRecordBatch) -> dict[str, Any]:
    assert batch.validate_crc()
    fields = {
        name: getattr(batch, name)
        for name in (
            "base_offset",
            "last_offset_delta",
            "first_timestamp",
            "max_timestamp",
            "producer_id",
            "producer_epoch",
            "base_sequence",
            "is_transactional",
            "is_control_batch",
            "compression_type",
            "timestamp_type",
            "records_count",
        )
    }
    fields["records"] = [
        (r.offset, r.timestamp, r.timestamp_type, r.key, r.value, tuple(r.headers)) for r in batch
    ]
    return fields


def our_view(raw: bytes, pos: int = 0) -> dict[str, Any]:
    header, records = decode_batch(raw, pos)
    return {
        "base_offset": header.base_offset,
        "last_offset_delta": header.last_offset_delta,
        "first_timestamp": header.base_timestamp,
        "max_timestamp": header.max_timestamp,
        "producer_id": header.producer_id,
        "producer_epoch": header.producer_epoch,
        "base_sequence": header.base_sequence,
        "is_transactional": header.is_transactional,
        "is_control_batch": header.is_control,
        "compression_type": header.compression,
        "timestamp_type": header.timestamp_type,
        "records_count": header.record_count,
        "records": [
            (r.offset, r.timestamp_ms, r.timestamp_type, r.key, r.value, r.headers) for r in records
        ],
    }


@pytest.mark.parametrize("codec", list(Compression))
@pytest.mark.parametrize(("producer", "txn"), PRODUCER_CASES)
def test_kafka_python_reads_our_batches(codec: int, producer: dict[str, int], txn: bool) -> None:
    raw = ours_build(ROWS, codec, producer, txn)
    assert kafka_view(DefaultRecordBatch(raw)) == our_view(raw)
    view = our_view(raw)
    assert view["compression_type"] == codec
    assert view["records"] == [
        (i, ts, 0, key, value, headers) for i, (ts, key, value, headers) in enumerate(ROWS)
    ]
    assert (view["producer_id"], view["is_transactional"]) == (producer["producer_id"], txn)


@pytest.mark.parametrize("codec", list(Compression))
@pytest.mark.parametrize(("producer", "txn"), PRODUCER_CASES)
def test_we_read_kafka_python_batches(codec: int, producer: dict[str, int], txn: bool) -> None:
    raw = kafka_build(ROWS, codec, producer, txn)
    assert parse_header(raw).compression == codec  # kafka-python did compress
    assert our_view(raw) == kafka_view(DefaultRecordBatch(raw))
    assert [r[3:] for r in our_view(raw)["records"]] == [
        (key, value, headers) for _, key, value, headers in ROWS
    ]


@pytest.mark.parametrize(("producer", "txn"), PRODUCER_CASES)
def test_uncompressed_batches_are_byte_identical(producer: dict[str, int], txn: bool) -> None:
    assert ours_build(ROWS, 0, producer, txn) == kafka_build(ROWS, 0, producer, txn)


rows_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2**42),
        st.none() | st.binary(max_size=40),
        st.none() | st.binary(max_size=300),
        st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3).map(
            tuple
        ),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy)
def test_uncompressed_bytes_match_kafka_python_for_arbitrary_records(rows: list[Row]) -> None:
    ours = ours_build(rows, 0, PRODUCER, False)
    assert ours == kafka_build(rows, 0, PRODUCER, False)
    assert our_view(ours) == kafka_view(DefaultRecordBatch(ours))


@pytest.mark.parametrize("codec", list(Compression))
def test_concatenated_batches_through_memory_records(codec: int) -> None:
    batches = []
    next_offset = 1000
    for chunk in (ROWS[:2], ROWS[2:], ROWS):
        raw = bytearray(ours_build(chunk, codec, PRODUCER, False))
        set_base_offset(raw, 0, next_offset)
        batches.append(bytes(raw))
        next_offset += len(chunk)
    stream = b"".join(batches)
    theirs = []
    records = MemoryRecords(stream)
    while records.has_next():
        theirs.extend((r.offset, r.key, r.value, tuple(r.headers)) for r in records.next_batch())
    ours = [(r.offset, r.key, r.value, r.headers) for _, recs in iter_records(stream) for r in recs]
    assert ours == theirs
    assert [o for o, *_ in ours] == list(range(1000, next_offset))


@pytest.mark.parametrize("control_type", list(ControlType))
def test_control_batches_both_ways(control_type: ControlType) -> None:
    ours = build_control_batch(
        control_type,
        producer_id=77,
        producer_epoch=3,
        coordinator_epoch=12,
        timestamp_ms=BASE_TS,
        partition_leader_epoch=0,
    )
    batch = DefaultRecordBatch(ours)
    assert batch.validate_crc() and batch.is_control_batch and batch.is_transactional
    (record,) = list(batch)
    assert isinstance(record, KafkaControlRecord)
    assert (record.version, record.type, record.commit) == (
        0,
        int(control_type),
        control_type is ControlType.COMMIT,
    )
    assert record.value == b"\x00\x00" + (12).to_bytes(4, "big")

    # kafka-python cannot flag a batch as control: build the same marker record with it, set
    # the control bit and re-CRC, and the bytes must be ours exactly.
    key, value = encode_control(control_type, 12)
    theirs = bytearray(
        kafka_build(
            [(BASE_TS, key, value, ())],
            0,
            {"producer_id": 77, "producer_epoch": 3, "base_sequence": -1},
            True,
        )
    )
    attributes = slice(ATTRIBUTES_OFFSET, ATTRIBUTES_OFFSET + 2)
    theirs[attributes] = (int.from_bytes(theirs[attributes], "big") | CONTROL_MASK).to_bytes(
        2, "big"
    )
    write_crc(theirs)
    assert bytes(theirs) == ours
    header, (rec,) = decode_batch(bytes(theirs))
    assert header.is_control and header.base_sequence == -1
    parsed = parse_control(rec.key, rec.value)
    assert (parsed.type, parsed.version, parsed.coordinator_epoch) == (control_type, 0, 12)
