"""Property: whatever is appended decodes back unchanged, for every codec."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore.records import BatchBuilder, Compression, decode_batch, iter_records
from logstore.records.varint import INT64_MAX, INT64_MIN

# Any two timestamps in this range, or within 70,000 of one in it, differ by less than 2**63:
# their delta fits a varlong.
timestamps = st.integers(min_value=-(2**62) + 2**17, max_value=2**62 - 2**17)
near = st.integers(min_value=-70_000, max_value=70_000)  # 1-, 2- and 3-byte deltas
blobs = st.none() | st.binary(max_size=300)
headers = st.lists(
    st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=4
).map(tuple)


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, list, dict]:
    base = draw(timestamps)
    count = draw(st.integers(min_value=1, max_value=300))
    ts_strategy = st.one_of(near.map(lambda d: base + d), timestamps)
    rows = draw(
        st.lists(
            st.tuples(ts_strategy, blobs, blobs, headers | st.just(())),
            min_size=count,
            max_size=count,
        )
    )
    kwargs = {
        "compression": draw(st.sampled_from(list(Compression))),
        "base_offset": draw(st.integers(0, 2**62)),
        "producer_id": draw(st.integers(-1, INT64_MAX)),
        "producer_epoch": draw(st.integers(-1, 2**15 - 1)),
        "base_sequence": draw(st.integers(-1, 2**31 - 1)),
        "is_transactional": draw(st.booleans()),
        "partition_leader_epoch": draw(st.integers(-1, 2**31 - 1)),
    }
    return base, rows, kwargs


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches(), st.sampled_from([bytes, bytearray, memoryview]))
def test_round_trip(batch: tuple[int, list, dict], key_type: type) -> None:
    base, rows, kwargs = batch
    builder = BatchBuilder(base_timestamp_ms=base, **kwargs)
    for ts, key, value, hdrs in rows:
        builder.append(ts, None if key is None else key_type(key), value, hdrs)
    raw = builder.build()
    header, records = decode_batch(raw, topic="t", partition=7)
    assert header.record_count == len(rows) and header.last_offset_delta == len(rows) - 1
    assert header.base_timestamp == base
    assert header.max_timestamp == max(ts for ts, *_ in rows)
    assert header.compression == kwargs["compression"]
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (
        kwargs["producer_id"],
        kwargs["producer_epoch"],
        kwargs["base_sequence"],
    )
    assert header.is_transactional is kwargs["is_transactional"]
    base_offset = kwargs["base_offset"]
    assert [(r.offset, r.timestamp_ms, r.key, r.value, r.headers) for r in records] == [
        (base_offset + i, ts, key, value, hdrs) for i, (ts, key, value, hdrs) in enumerate(rows)
    ]
    assert all((r.topic, r.partition, r.timestamp_type) == ("t", 7, 0) for r in records)
    if kwargs["compression"] == Compression.NONE:
        assert builder.size_in_bytes == len(raw)
    assert [recs for _, recs in iter_records(raw + raw[:30], topic="t", partition=7)] == [records]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([INT64_MIN // 2, INT64_MAX // 2, 0, -1]), min_size=1, max_size=10))
def test_extreme_timestamps(ts_list: list[int]) -> None:
    builder = BatchBuilder()
    for ts in ts_list:
        builder.append(ts, None, None)
    _, records = decode_batch(builder.build())
    assert [r.timestamp_ms for r in records] == ts_list
