"""decode_batch / iter_records on valid input: offsets, timestamps, min_offset, buffers."""

from __future__ import annotations

import pytest

from logstore.errors import CorruptRecordError
from logstore.records import (
    BatchBuilder,
    Compression,
    decode_batch,
    encode_batch,
    iter_records,
    set_base_offset,
    set_log_append_time,
)
from logstore.records import header as h
from logstore.types import ConsumerRecord


def _batch(count: int, *, base_offset: int = 0, codec: int = 0, ts: int = 1_000) -> bytes:
    builder = BatchBuilder(compression=codec, base_offset=base_offset)
    for i in range(count):
        builder.append(ts + i, b"k%d" % i, b"v%d" % i, [("i", b"%d" % i)] if i % 3 == 0 else ())
    return builder.build()


def test_records_are_consumer_records_with_absolute_offsets() -> None:
    header, records = decode_batch(_batch(5, base_offset=40), topic="orders", partition=2)
    assert header.base_offset == 40
    assert all(type(r) is ConsumerRecord for r in records)
    assert records[3] == ConsumerRecord("orders", 2, 43, 1003, b"k3", b"v3", (("i", b"3"),), 0)
    assert records[1].headers == () and records[1].offset == 41


@pytest.mark.parametrize("codec", list(Compression))
def test_min_offset_skips_the_head_of_a_batch(codec: int) -> None:
    raw = _batch(10, base_offset=100, codec=codec)
    offsets = lambda m: [r.offset for r in decode_batch(raw, min_offset=m)[1]]  # noqa: E731
    assert offsets(0) == offsets(100) == list(range(100, 110))
    assert offsets(105) == list(range(105, 110))
    assert offsets(109) == [109]
    assert offsets(110) == []


def test_log_append_time_replaces_every_timestamp() -> None:
    raw = bytearray(_batch(4, ts=5_000))
    set_log_append_time(raw, 0, 99_999)
    header, records = decode_batch(bytes(raw), min_offset=1)
    assert header.timestamp_type == 1
    assert [(r.offset, r.timestamp_ms, r.timestamp_type) for r in records] == [
        (1, 99_999, 1),
        (2, 99_999, 1),
        (3, 99_999, 1),
    ]
    assert records[0].key == b"k1"


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_any_bytes_like_input_gives_bytes_fields(wrap) -> None:
    raw = b"prefix" + _batch(3, codec=Compression.NONE) + b"suffix"
    _, records = decode_batch(wrap(raw), 6)
    assert [type(r.key) for r in records] == [bytes] * 3
    assert [r.value for r in records] == [b"v0", b"v1", b"v2"]


def test_null_and_empty_keys_and_values_are_distinct() -> None:
    raw = encode_batch([(1, None, b"", ()), (1, b"", None, (("h", None),))])
    records = decode_batch(raw)[1]
    assert [(r.key, r.value, r.headers) for r in records] == [
        (None, b"", ()),
        (b"", None, (("h", None),)),
    ]


def test_large_lengths_and_offsets_use_multi_byte_varints() -> None:
    builder = BatchBuilder()
    for i in range(20_000):
        builder.append(i * 1_000_000, None, b"x" * (i % 300) if i % 1000 else b"y" * 70_000)
    _, records = decode_batch(builder.build())
    assert len(records) == 20_000 and records[-1].offset == 19_999
    assert records[-1].timestamp_ms == 19_999 * 1_000_000
    assert len(records[1000].value) == 70_000 and len(records[1001].value) == 101


def test_iter_records_over_concatenated_batches_and_partial_tail() -> None:
    batches = []
    for base in (0, 3, 5):
        raw = bytearray(_batch(3 if base == 0 else 2))
        set_base_offset(raw, 0, base)
        batches.append(bytes(raw))
    stream = b"".join(batches)
    got = [[r.offset for r in recs] for _, recs in iter_records(stream, topic="t")]
    assert got == [[0, 1, 2], [3, 4], [5, 6]]
    cut = stream[:-7]
    assert [h.base_offset for h, _ in iter_records(cut)] == [0, 3]
    with pytest.raises(CorruptRecordError):
        list(iter_records(cut, allow_partial_tail=False))
    assert [len(r) for _, r in iter_records(stream, min_offset=4)] == [0, 1, 2]
    assert list(iter_records(b"")) == []


def test_empty_compressed_batch_kept_for_producer_state() -> None:
    # An emptied batch: no records section, count 0 (what the log cleaner may leave behind).
    empty = bytearray(h.HEADER_SIZE)
    h.HEADER.pack_into(
        empty, 0, 0, h.HEADER_SIZE - h.LOG_OVERHEAD, -1, 2, 0, Compression.ZSTD, 0, 1, 1, 7, 1, 0, 0
    )
    h.write_crc(empty)
    header, records = decode_batch(bytes(empty))
    assert records == [] and header.producer_id == 7
