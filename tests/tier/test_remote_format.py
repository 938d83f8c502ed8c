"""The remote segment byte format: writer, tail parser, sparse index lookups, batch framing."""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from itertools import pairwise

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logstore.errors import CorruptRecordError, IllegalStateError, InvalidArgumentError
from logstore.log.producer_state import AbortedTxn
from logstore.records import header as h
from logstore.records.builder import BatchBuilder
from logstore.records.compression import Compression
from logstore.records.control import ControlType, build_control_batch
from logstore.tier import remote_format as rf

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


# --- helpers ---------------------------------------------------------------------------------


def make_batch(base_offset: int, count: int = 1, *, value_size: int = 10, ts: int = 1_000,
               compression: int = Compression.NONE, gap: int = 0) -> bytes:
    """A batch of ``count`` records at ``base_offset``; ``gap`` widens its offset range (as a
    compacted batch keeps its original range)."""
    builder = BatchBuilder(base_offset=base_offset, compression=compression)
    for i in range(count):
        builder.append(ts + i, b"k%d" % i, bytes([i % 251]) * value_size)
    data = bytearray(builder.build())
    if gap:
        struct.pack_into(">i", data, h.LAST_OFFSET_DELTA_OFFSET, count - 1 + gap)
        h.write_crc(data)
    return bytes(data)


def make_marker(offset: int, control: ControlType, *, producer_id: int = 7,
                ts: int = 2_000) -> bytes:
    data = bytearray(build_control_batch(control, producer_id=producer_id, producer_epoch=1,
                                         coordinator_epoch=0, timestamp_ms=ts))
    h.set_base_offset(data, 0, offset)
    return bytes(data)


def write(batches: list[bytes], *, base_offset: int = 0, next_offset: int | None = None,
          aborted: tuple[tuple[int, int, int], ...] = (), interval: int = 1024,
          ) -> tuple[bytes, rf.RemoteSegmentSummary]:
    out = io.BytesIO()
    writer = rf.RemoteSegmentWriter(out, base_offset=base_offset, index_interval_bytes=interval)
    last = base_offset - 1
    for batch in batches:
        writer.add(batch)
        last = h.parse_header(batch).last_offset
    summary = writer.finish(next_offset=last + 1 if next_offset is None else next_offset,
                            aborted=aborted)
    return out.getvalue(), summary


def tail_of(blob: bytes, summary: rf.RemoteSegmentSummary) -> bytes:
    start, end = rf.tail_range(summary.size_bytes, summary.data_bytes)
    return blob[start:end]


def positions(batches: list[bytes]) -> list[int]:
    result, pos = [], 0
    for batch in batches:
        result.append(pos)
        pos += len(batch)
    return result


def expected_entries(batches: list[bytes], interval: int) -> list[tuple[int, int, int]]:
    """The index the format promises, computed independently of the writer."""
    entries: list[tuple[int, int, int]] = []
    running = None
    for pos, batch in zip(positions(batches), batches, strict=True):
        header = h.parse_header(batch)
        running = header.max_timestamp if running is None else max(running, header.max_timestamp)
        if not entries or pos - entries[-1][1] >= interval:
            entries.append((header.base_offset, pos, running))
    return entries


def re_crc(tail: bytearray) -> bytearray:
    """Recompute the footer CRC, so semantic checks (not the CRC) must catch a mutation."""
    end = len(tail) - rf.FOOTER_SIZE + rf.FOOTER_CRC_OFFSET
    if end >= 0:
        struct.pack_into(">I", tail, end, crc32c.crc32c(bytes(tail[:end])))
    return tail


def set_footer(tail: bytes, name: str, value: object) -> bytes:
    buf = bytearray(tail)
    code = dict(rf._FOOTER_FIELDS)[name]
    struct.pack_into(">" + code, buf, len(buf) - rf.FOOTER_SIZE + rf.FOOTER_OFFSETS[name], value)
    return bytes(re_crc(buf))


def check_invariants(index: rf.RemoteIndex, *, size_bytes: int) -> None:
    """What every successfully parsed tail must satisfy, however hostile the bytes."""
    s = index.summary
    assert s.size_bytes == size_bytes
    assert s.index_count == len(index.entries) and s.aborted_count == len(index.aborted)
    assert s.size_bytes == s.data_bytes + 24 * (s.index_count + s.aborted_count) + rf.FOOTER_SIZE
    assert s.base_offset >= 0 and s.base_offset - 1 <= s.last_offset < s.next_offset
    if s.data_bytes == 0:
        assert not index.entries and s.last_offset == s.base_offset - 1
    else:
        assert index.entries and index.entries[0].position == 0
    for a, b in pairwise(index.entries):
        assert a.base_offset < b.base_offset and a.position < b.position
        assert a.max_timestamp <= b.max_timestamp
    for e in index.entries:
        assert s.base_offset <= e.base_offset <= s.last_offset
        assert 0 <= e.position < s.data_bytes and e.max_timestamp <= s.max_timestamp
    keys = [(a.first_offset, a.last_offset, a.producer_id) for a in index.aborted]
    assert keys == sorted(set(keys))
    for a in index.aborted:
        assert a.producer_id >= 0 and 0 <= a.first_offset <= a.last_offset
        assert s.base_offset <= a.last_offset < s.next_offset


def mixed_segment() -> tuple[list[bytes], tuple[tuple[int, int, int], ...]]:
    """Batches of every codec and size, with gaps, a commit and an aborted transaction."""
    batches: list[bytes] = []
    offset = 100
    for i, codec in enumerate(list(Compression) * 3):
        batch = make_batch(offset, 1 + i % 4, value_size=5 + 97 * i, ts=10_000 - 37 * i,
                           compression=codec, gap=i % 3)
        batches.append(batch)
        offset = h.parse_header(batch).next_offset + (i % 2)
    batches.append(make_marker(offset, ControlType.ABORT))
    batches.append(make_marker(offset + 1, ControlType.COMMIT, producer_id=8))
    return batches, ((7, 95, offset), (8, 101, offset))


# --- layout ----------------------------------------------------------------------------------


def test_footer_table_in_docstring_matches_struct() -> None:
    doc = rf.__doc__ or ""
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\w+)\s", doc, re.MULTILINE)
    table = {name: (int(off), int(size)) for off, size, name in rows}
    assert set(table) == set(rf.FOOTER_OFFSETS)
    for name, code in rf._FOOTER_FIELDS:
        assert table[name] == (rf.FOOTER_OFFSETS[name], struct.calcsize(">" + code))
    assert re.search(rf"^\s+{rf.FOOTER_SIZE}\s+\(FOOTER_SIZE\)", doc, re.MULTILINE)
    assert rf.FOOTER_CRC_OFFSET == rf.FOOTER_OFFSETS["crc"] == rf.FOOTER_SIZE - 4
    assert rf.INDEX_ENTRY.size == rf.ABORTED_ENTRY.size == 24


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_every_codec_control_batches_and_aborted() -> None:
    batches, aborted = mixed_segment()
    last = h.parse_header(batches[-1]).last_offset
    blob, summary = write(batches, base_offset=90, next_offset=last + 5, aborted=aborted,
                          interval=300)
    data = b"".join(batches)
    assert blob[: len(data)] == data
    assert summary == rf.RemoteSegmentSummary(
        base_offset=90, next_offset=last + 5, last_offset=last,
        max_timestamp=max(h.parse_header(b).max_timestamp for b in batches),
        data_bytes=len(data), size_bytes=len(blob), batch_count=len(batches),
        index_count=len(expected_entries(batches, 300)), aborted_count=2)
    for known in (len(data), None):
        index = rf.parse_tail(tail_of(blob, summary), size_bytes=len(blob), data_bytes=known)
        assert index.summary == summary
        assert [tuple(e) for e in index.entries] == expected_entries(batches, 300)
        assert index.aborted == (AbortedTxn(7, 95, last - 1), AbortedTxn(8, 101, last - 1))
        check_invariants(index, size_bytes=len(blob))
    assert rf.parse_footer(blob[-rf.FOOTER_SIZE:], size_bytes=len(blob)) == summary
    frames = list(rf.iter_frames(blob, 0, summary.data_bytes, final=True))
    assert [f[0] for f in frames] == positions(batches)
    assert [blob[p : p + n] for p, n, _, _ in frames] == batches


def test_writer_streams_data_and_survives_partial_writes() -> None:
    class Trickle(io.RawIOBase):
        """Accepts at most 7 bytes per write, like a raw file may."""

        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            chunk = bytes(memoryview(b)[:7])  # type: ignore[arg-type]
            self.buf += chunk
            return len(chunk)

    out = Trickle()
    writer = rf.RemoteSegmentWriter(out, base_offset=0,  # type: ignore[arg-type]
                                    index_interval_bytes=0)
    batches = [make_batch(i * 3, 3, value_size=50) for i in range(5)]
    for n, batch in enumerate(batches, 1):
        writer.add(batch)
        assert bytes(out.buf) == b"".join(batches[:n])  # written at once, not held back
    summary = writer.finish(next_offset=15, aborted=[AbortedTxn(1, 0, 14)])
    blob = bytes(out.buf)
    index = rf.parse_tail(tail_of(blob, summary), size_bytes=len(blob),
                          data_bytes=summary.data_bytes)
    assert [e.position for e in index.entries] == positions(batches)  # interval 0: every batch
    assert index.aborted == (AbortedTxn(1, 0, 14),)


def test_empty_segment() -> None:
    blob, summary = write([], base_offset=50, next_offset=60, aborted=((3, 40, 55),))
    assert summary == rf.RemoteSegmentSummary(50, 60, 49, -1, 0, len(blob), 0, 0, 1)
    assert rf.tail_range(len(blob), 0) == (0, len(blob))
    index = rf.parse_tail(blob, size_bytes=len(blob), data_bytes=0)
    assert index.entries == () and index.summary == summary
    assert index.position_for(55) == 0
    assert index.position_for_timestamp(-1) is None
    assert index.aborted_between(50, 60) == [AbortedTxn(3, 40, 55)]
    assert list(rf.iter_frames(blob, 0, 0, final=True)) == []
    blob, summary = write([], base_offset=50, next_offset=50)
    assert rf.parse_tail(blob, size_bytes=len(blob)).summary.next_offset == 50


# --- index -----------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0, 1, 200, 1000, 5000, 10**9])
def test_index_interval_and_position_for_every_offset(interval: int) -> None:
    batches = [make_batch(10 + 4 * i, 1 + i % 3, value_size=40 * (i % 7), gap=i % 2)
               for i in range(40)]
    blob, summary = write(batches, base_offset=5, interval=interval)
    index = rf.parse_tail(tail_of(blob, summary), size_bytes=len(blob))
    entries = [tuple(e) for e in index.entries]
    assert entries == expected_entries(batches, interval)
    gaps = [b[1] - a[1] for a, b in pairwise(entries)]
    assert all(gap >= interval for gap in gaps)
    frames = list(rf.iter_frames(blob, 0, summary.data_bytes, final=True))
    for offset in range(summary.next_offset + 3):
        pos = index.position_for(offset)
        assert pos in [e[1] for e in entries]
        # The best entry: the last one starting at or before the offset's batch.
        assert pos == max([e[1] for e in entries if e[0] <= offset], default=0)
        holding = [f for f in frames if f[2] <= offset <= f[3]]
        if holding:
            assert pos <= holding[0][0]
            found = [f for f in rf.iter_frames(blob, pos, summary.data_bytes) if f[3] >= offset]
            assert found[0] == holding[0]


def test_entry_spacing_is_at_least_the_interval_inclusive() -> None:
    batches = [make_batch(i, value_size=100) for i in range(6)]
    size = len(batches[0])
    assert all(len(b) == size for b in batches)
    for interval, expected in ((size, [0, 1, 2, 3, 4, 5]), (size + 1, [0, 2, 4]),
                               (2 * size, [0, 2, 4])):
        blob, summary = write(batches, interval=interval)
        index = rf.parse_tail(tail_of(blob, summary), size_bytes=len(blob))
        assert [e.base_offset for e in index.entries] == expected


def test_position_for_timestamp_finds_first_batch_at_or_after() -> None:
    stamps = [500, 100, 300, 900, 200, 900, 1500, 50, 1200, 1600]
    batches = [make_batch(i * 2, 2, value_size=120, ts=ts - 1) for i, ts in enumerate(stamps)]
    blob, summary = write(batches, interval=400)
    index = rf.parse_tail(tail_of(blob, summary), size_bytes=len(blob))
    assert 1 < len(index.entries) < len(batches)
    frames = list(rf.iter_frames(blob, 0, summary.data_bytes))
    max_ts = {f[0]: h.parse_header(blob, f[0]).max_timestamp for f in frames}
    assert list(max_ts.values()) == stamps
    for ts in sorted({s + d for s in stamps for d in (-1, 0, 1)} | {-(2**63), 0}):
        pos = index.position_for_timestamp(ts)
        first = next((p for p in max_ts if max_ts[p] >= ts), None)
        if first is None:
            assert pos is None
            continue
        assert pos is not None and pos <= first
        scanned = [p for p, *_ in rf.iter_frames(blob, pos, summary.data_bytes)]
        assert next(p for p in scanned if max_ts[p] >= ts) == first
    assert index.position_for_timestamp(1601) is None


def test_aborted_between_matches_segment_semantics() -> None:
    txns = ((1, 0, 10), (2, 5, 5), (3, 5, 20), (4, 12, 15), (5, 21, 29), (1, 22, 25))
    blob, summary = write([make_batch(0, 30)], aborted=txns)
    index = rf.parse_tail(tail_of(blob, summary), size_bytes=len(blob))
    assert [a.first_offset for a in index.aborted] == sorted(t[1] for t in txns)
    for start in range(-1, 32):
        for end in range(start, 33):
            expected = sorted((AbortedTxn(*t) for t in txns if t[2] >= start and t[1] < end),
                              key=lambda a: (a.first_offset, a.last_offset, a.producer_id))
            assert index.aborted_between(start, end) == expected
    assert index.aborted_between(10, 11) == [AbortedTxn(1, 0, 10), AbortedTxn(3, 5, 20)]
    assert index.aborted_between(16, 21) == [AbortedTxn(3, 5, 20)]  # first_offset == end: out


def test_aborted_duplicates_are_stored_once() -> None:
    _blob, summary = write([make_batch(0, 3)], aborted=((1, 0, 2), (1, 0, 2)))
    assert summary.aborted_count == 1


# --- writer validation -----------------------------------------------------------------------


def test_writer_rejects_out_of_order_and_malformed_batches() -> None:
    writer = rf.RemoteSegmentWriter(io.BytesIO(), base_offset=10)
    with pytest.raises(InvalidArgumentError, match="does not follow"):
        writer.add(make_batch(9))  # below the segment's base offset
    writer.add(make_batch(10, 3))
    for base in (10, 11, 12):  # repeats or overlaps offsets 10..12
        with pytest.raises(InvalidArgumentError, match="does not follow"):
            writer.add(make_batch(base))
    with pytest.raises(InvalidArgumentError, match="exactly one batch"):
        writer.add(make_batch(20) + make_batch(21))
    corrupt = bytearray(make_batch(20))
    corrupt[-1] ^= 1
    with pytest.raises(CorruptRecordError, match="CRC"):
        writer.add(bytes(corrupt))
    with pytest.raises(CorruptRecordError):
        writer.add(make_batch(20)[:-1])
    with pytest.raises(InvalidArgumentError, match="bytes-like"):
        writer.add("batch")  # type: ignore[arg-type]
    writer.add(make_batch(13))  # the rejected calls changed nothing
    with pytest.raises(InvalidArgumentError):
        writer.finish(next_offset=13)
    with pytest.raises(InvalidArgumentError, match="marker"):
        writer.finish(next_offset=14, aborted=[(1, 5, 14)])
    for bad in ((-1, 5, 13), (1, -1, 13), (1, 12, 11), (1, 0, 9), (1, 2), 5, (1, 2.0, 13)):
        with pytest.raises(InvalidArgumentError):
            writer.finish(next_offset=14, aborted=[bad])  # type: ignore[list-item]
    writer.finish(next_offset=14)
    with pytest.raises(IllegalStateError):
        writer.add(make_batch(14))
    with pytest.raises(IllegalStateError):
        writer.finish(next_offset=15)


def test_writer_refuses_to_continue_after_a_failed_write() -> None:
    class Full(io.BytesIO):
        def write(self, b: object) -> int:
            raise OSError("disk full")

    writer = rf.RemoteSegmentWriter(Full(), base_offset=0)
    with pytest.raises(OSError):
        writer.add(make_batch(0))
    with pytest.raises(IllegalStateError, match="discard"):
        writer.add(make_batch(1))
    with pytest.raises(IllegalStateError, match="discard"):
        writer.finish(next_offset=2)


def test_writer_rejects_bad_options() -> None:
    for kwargs in ({"base_offset": -1}, {"base_offset": True}, {"base_offset": 1.0},
                   {"base_offset": 0, "index_interval_bytes": -1}):
        with pytest.raises(InvalidArgumentError):
            rf.RemoteSegmentWriter(io.BytesIO(), **kwargs)  # type: ignore[arg-type]
    writer = rf.RemoteSegmentWriter(io.BytesIO(), base_offset=5)
    with pytest.raises(InvalidArgumentError):
        writer.finish(next_offset=4)  # empty: next_offset must be >= base_offset


# --- hostile tails ---------------------------------------------------------------------------


def sample_tail() -> tuple[bytes, int, int]:
    batches = [make_batch(i * 3, 2, value_size=90, ts=1000 + i) for i in range(12)]
    blob, summary = write(batches, next_offset=40, aborted=((1, 0, 4), (2, 3, 35)), interval=200)
    return tail_of(blob, summary), summary.size_bytes, summary.data_bytes


def replace_entry(tail: bytes, i: int, entry: tuple[int, int, int]) -> bytes:
    at = i * rf.INDEX_ENTRY.size
    return bytes(re_crc(bytearray(tail[:at] + rf.INDEX_ENTRY.pack(*entry) + tail[at + 24 :])))


def drop_index(tail: bytes) -> bytes:
    """The same object size, but every index entry counted as data instead."""
    names = (n for n, _ in rf._FOOTER_FIELDS)
    footer = dict(zip(names, rf.FOOTER.unpack(tail[-rf.FOOTER_SIZE:]), strict=True))
    dropped = 24 * footer["index_count"]
    tail = set_footer(tail[dropped:], "index_count", 0)
    return set_footer(tail, "data_bytes", footer["data_bytes"] + dropped)


def test_tail_range_rejects_impossible_sizes() -> None:
    _tail, size, data = sample_tail()
    assert rf.tail_range(size, data) == (data, size)
    for bad_size, bad_data in ((size, size), (rf.FOOTER_SIZE - 1, 0), (size, data + 1)):
        with pytest.raises(CorruptRecordError):
            rf.tail_range(bad_size, bad_data)
    with pytest.raises(InvalidArgumentError):
        rf.tail_range(size, -1)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: set_footer(t, "magic", b"LSRX"), "magic"),
    (lambda t: set_footer(t, "version", 2), "version"),
    (lambda t: set_footer(t, "flags", 1), "flags"),
    (lambda t: bytes(bytearray(t[:-1]) + bytes([t[-1] ^ 1])), "CRC"),
    (lambda t: bytes([t[0] ^ 1]) + t[1:], "CRC"),
    (lambda t: set_footer(t, "index_count", 2**32 - 1), "add up"),
    (lambda t: set_footer(t, "aborted_count", 1), "add up"),
    (lambda t: set_footer(t, "data_bytes", 0), "add up"),
    (lambda t: set_footer(t, "last_offset", 40), "out of order"),
    (lambda t: set_footer(t, "base_offset", 4), "outside offsets"),
    (lambda t: set_footer(t, "batch_count", 0), "cannot fit"),
    (lambda t: set_footer(t, "max_timestamp", 1000), "max timestamp"),
    (lambda t: bytes(re_crc(bytearray(rf.INDEX_ENTRY.pack(0, 8, 1000)) + t[24:])), "position 8"),
    (lambda t: bytes(re_crc(bytearray(t[:24] * 2 + t[48:]))), "does not follow"),
    (lambda t: replace_entry(t, 1, (3, 0, 1002)), "does not follow"),  # position back
    (lambda t: replace_entry(t, 1, (0, 263, 1002)), "does not follow"),  # offset back
    (lambda t: replace_entry(t, 1, (3, 263, 1000)), "does not follow"),  # timestamp back
    (lambda t: replace_entry(t, 11, (35, 2893, 1012)), "outside offsets"),  # past last_offset
    (drop_index, "cannot fit"),
    (lambda t: replace_entry(t, 1, (1, 10**6, 1003)), "no room"),
], ids=["magic", "version", "flags", "crc-footer", "crc-index", "index-count", "aborted-count",
        "data-bytes", "last-offset", "base-offset", "batch-count", "max-ts", "first-position",
        "repeated-entry", "position-back", "offset-back", "timestamp-back",
        "entry-past-last", "no-index", "position-past-data"])
def test_malformed_tails_raise_clear_errors(mutate: Callable[[bytes], bytes],
                                            message: str) -> None:
    tail, size, _ = sample_tail()
    with pytest.raises(CorruptRecordError, match=message):
        rf.parse_tail(mutate(tail), size_bytes=size)


@pytest.mark.parametrize(("field", "value"), [
    ("batch_count", 1), ("last_offset", 50), ("max_timestamp", 5)])
def test_malformed_empty_tails(field: str, value: int) -> None:
    blob, summary = write([], base_offset=50, next_offset=60)
    assert rf.parse_tail(blob, size_bytes=len(blob)).summary == summary
    with pytest.raises(CorruptRecordError, match="empty segment"):
        rf.parse_tail(set_footer(blob, field, value), size_bytes=len(blob))


def test_malformed_aborted_sections_and_lengths() -> None:
    tail, size, data = sample_tail()
    index = rf.parse_tail(tail, size_bytes=size, data_bytes=data)
    start = 24 * len(index.entries)
    first, second = tail[start : start + 24], tail[start + 24 : start + 48]
    swapped = tail[:start] + second + first + tail[start + 48 :]
    with pytest.raises(CorruptRecordError, match="out of order"):
        rf.parse_tail(bytes(re_crc(bytearray(swapped))), size_bytes=size)
    for row in ((-1, 0, 4), (1, 5, 4), (1, 0, 40)):
        bad = tail[:start] + rf.ABORTED_ENTRY.pack(*row) + tail[start + 24 :]
        with pytest.raises(CorruptRecordError, match="out of range"):
            rf.parse_tail(bytes(re_crc(bytearray(bad))), size_bytes=size)
    with pytest.raises(CorruptRecordError, match="expected"):
        rf.parse_tail(tail, size_bytes=size, data_bytes=data - 24)  # caller disagrees
    with pytest.raises(CorruptRecordError, match="places it"):
        rf.parse_tail(tail[24:], size_bytes=size)  # truncated from the front
    with pytest.raises(CorruptRecordError, match="expected"):
        rf.parse_tail(tail[24:], size_bytes=size, data_bytes=data)
    with pytest.raises(CorruptRecordError, match="shorter"):
        rf.parse_tail(tail[:10], size_bytes=size)


@FAST
@given(st.data())
def test_mutated_tails_raise_corrupt_or_parse_consistently(data: st.DataObject) -> None:
    tail, size, _ = sample_tail()
    buf = bytearray(tail)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(buf) - 1))
        buf[at] = data.draw(st.integers(0, 255))
    cut_front = data.draw(st.integers(0, 30))
    cut_back = data.draw(st.sampled_from([0, 0, 1, 24]))
    buf = buf[cut_front : len(buf) - cut_back]
    if data.draw(st.booleans()):
        re_crc(buf)  # so the semantic checks, not the CRC, have to catch it
    claimed = data.draw(st.sampled_from([None, size - len(tail)]))
    try:
        index = rf.parse_tail(bytes(buf), size_bytes=size, data_bytes=claimed)
    except CorruptRecordError:
        return
    check_invariants(index, size_bytes=size)


@FAST
@given(st.binary(max_size=200), st.integers(0, 2**40))
def test_random_bytes_never_escape_as_another_error(blob: bytes, extra: int) -> None:
    try:
        index = rf.parse_tail(re_crc(bytearray(blob)), size_bytes=len(blob) + extra)
    except CorruptRecordError:
        return
    check_invariants(index, size_bytes=len(blob) + extra)


# --- property round trip ---------------------------------------------------------------------


@FAST
@given(
    st.integers(0, 10**12),
    st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4), st.integers(0, 400),
                       st.integers(-5, 10**6), st.integers(0, 3)), max_size=25),
    st.integers(0, 3000),
    st.integers(0, 3),
)
def test_round_trip_property(base: int, specs: list[tuple[int, int, int, int, int]],
                             interval: int, tail_gap: int) -> None:
    batches, offset = [], base
    for skip, count, size, ts, gap in specs:
        offset += skip
        batches.append(make_batch(offset, count, value_size=size, ts=ts, gap=gap))
        offset = h.parse_header(batches[-1]).next_offset
    blob, summary = write(batches, base_offset=base, next_offset=offset + tail_gap,
                          interval=interval)
    assert blob[: summary.data_bytes] == b"".join(batches)
    index = rf.parse_tail(tail_of(blob, summary), size_bytes=len(blob),
                          data_bytes=summary.data_bytes)
    check_invariants(index, size_bytes=len(blob))
    assert index.summary == summary and summary.batch_count == len(batches)
    assert [tuple(e) for e in index.entries] == expected_entries(batches, interval)
    if batches:
        assert summary.max_timestamp == max(h.parse_header(b).max_timestamp for b in batches)
    frames = list(rf.iter_frames(blob, 0, summary.data_bytes, final=True))
    assert [(p, n) for p, n, _, _ in frames] == list(
        zip(positions(batches), map(len, batches), strict=True)
    )


# --- iter_frames -----------------------------------------------------------------------------


def test_iter_frames_stops_at_every_truncation_point() -> None:
    batches = [make_batch(i * 10, 1 + i, value_size=30 * i, gap=1) for i in range(6)]
    data = b"".join(batches)
    starts = positions(batches)
    for end in range(len(data) + 1):
        frames = list(rf.iter_frames(data, 0, end))
        complete = [p for p, b in zip(starts, batches, strict=True) if p + len(b) <= end]
        assert [f[0] for f in frames] == complete
        boundary = end in starts or end == len(data)
        if boundary:
            assert len(list(rf.iter_frames(data, 0, end, final=True))) == len(complete)
        else:
            with pytest.raises(CorruptRecordError, match="truncated"):
                list(rf.iter_frames(data, 0, end, final=True))
    # A ranged GET starting at an index position: positions are in the buffer's coordinates.
    got = list(rf.iter_frames(memoryview(b"xx" + data), 2 + starts[2], 2 + len(data)))
    assert got == [(2 + p, len(b), h.parse_header(b).base_offset, h.parse_header(b).last_offset)
                   for p, b in zip(starts[2:], batches[2:], strict=True)]


def test_iter_frames_rejects_corrupt_framing() -> None:
    first, second = make_batch(10, 2), make_batch(20, 2)
    for length in (h.MIN_BATCH_LENGTH - 1, 0, -5):
        bad = bytearray(first + second)
        struct.pack_into(">i", bad, len(first) + h.LENGTH_OFFSET, length)
        with pytest.raises(CorruptRecordError, match="impossible length"):
            list(rf.iter_frames(bad, 0, len(bad)))
    with pytest.raises(CorruptRecordError, match="after 11"):
        list(rf.iter_frames(first + first, 0, 2 * len(first)))
    bad = bytearray(first)
    struct.pack_into(">q", bad, 0, -1)
    with pytest.raises(CorruptRecordError):
        list(rf.iter_frames(bad, 0, len(bad)))
    bad = bytearray(first)
    bad[h.MAGIC_OFFSET] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        list(rf.iter_frames(bad, 0, len(bad)))
    for pos, end in ((-1, 5), (5, 4), (0, len(first) + 1)):
        with pytest.raises(InvalidArgumentError):
            list(rf.iter_frames(first, pos, end))
