"""``logstore dump`` and the library behind it (logstore.log.dump)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import apsw
import pytest

import logstore
from logstore.log.dump import describe_batch, iter_batches, last_sequence
from logstore.log.segment import segment_file_name
from logstore.records.header import HEADER_SIZE


def fields(line: str) -> dict[str, str]:
    """``name: value`` pairs of a dump line (values are single tokens)."""
    return dict(re.findall(r"(\w+): (\S+)", line))


@pytest.fixture
def three_batches(api, produce) -> logstore.Log:
    """Topic ``t``: batches of 2, 3 and 1 records (offsets 0-1, 2-4, 5)."""
    api.create_topic("t")
    produce(api, "t", [b"a", b"b"], key=b"k")
    produce(api, "t", [b"c", b"d", b"e"])
    produce(api, "t", [b"\x00binary"])
    return api


def test_one_line_per_batch(run, three_batches) -> None:
    result = run("dump", "t", "--partition", "0")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    batches = [fields(line) for line in lines]
    assert [(b["baseOffset"], b["lastOffset"], b["count"]) for b in batches] == [
        ("0", "1", "2"), ("2", "4", "3"), ("5", "5", "1")]
    assert all(b["isvalid"] == "true" and b["magic"] == "2" for b in batches)
    assert all(b["compresscodec"] == "none" and b["isTransactional"] == "false"
               for b in batches)
    # Producers are idempotent by default: each batch carries its producer's id (the fixture
    # uses a new producer per batch) and the sequence numbers of its records.
    assert len({b["producerId"] for b in batches}) == 3
    assert all(int(b["producerId"]) >= 0 and b["producerEpoch"] == "0" for b in batches)
    assert [(b["baseSequence"], b["lastSequence"]) for b in batches] == [
        ("0", "1"), ("0", "2"), ("0", "0")]
    assert all("CreateTime" in b and b["segment"] == "0" for b in batches)
    positions = [int(b["position"]) for b in batches]
    sizes = [int(b["size"]) for b in batches]
    assert positions == [0, sizes[0], sizes[0] + sizes[1]]
    assert sum(sizes) == three_batches.describe_topic("t").partitions[0].size_bytes


def test_records(run, three_batches) -> None:
    lines = run("dump", "t", "--partition", "0", "--records").stdout.splitlines()
    records = [fields(line) for line in lines if line.startswith("| ")]
    assert [r["offset"] for r in records] == ["0", "1", "2", "3", "4", "5"]
    assert [r.get("payload") for r in records] == ["a", "b", "c", "d", "e", None]
    assert records[0]["keySize"] == "1" and records[0]["key"] == "k"
    assert records[2]["keySize"] == "-1" and "key" not in records[2]
    assert records[5]["valueSize"] == "7"
    assert all(r["headerCount"] == "0" for r in records)
    assert lines[0].startswith("baseOffset: 0") and lines[3].startswith("baseOffset: 2")


def test_json(run, three_batches) -> None:
    result = run("dump", "t", "--partition", "0", "--format", "json", "--records")
    batches = [json.loads(line) for line in result.stdout.splitlines()]
    assert [b["base_offset"] for b in batches] == [0, 2, 5]
    assert all(b["is_valid"] and b["crc"] == b["computed_crc"] for b in batches)
    assert [r["payload"] for r in batches[1]["records"]] == ["c", "d", "e"]
    assert batches[0]["records"][0]["key"] == "k"


def _segment(data_dir: Path, topic: str, partition: int, base: int) -> Path:
    return data_dir / "topics" / topic / str(partition) / segment_file_name(base)


def _flip_last_byte(segment: Path, base_offset: int) -> None:
    """Damage the record area of one stored batch, as a bad disk would."""
    conn = apsw.Connection(str(segment))
    try:
        (data,) = conn.execute("SELECT data FROM batches WHERE base_offset = ?",
                               (base_offset,)).fetchone()
        damaged = bytearray(data)
        assert len(damaged) > HEADER_SIZE  # the flipped byte is in the records, not the header
        damaged[-1] ^= 0xFF
        conn.execute("UPDATE batches SET data = ? WHERE base_offset = ?",
                     (bytes(damaged), base_offset))
    finally:
        conn.close()


def test_corrupt_batch_is_reported_not_raised(run, three_batches, data_dir: Path) -> None:
    _flip_last_byte(_segment(data_dir, "t", 0, 0), 2)
    result = run("dump", "t", "--partition", "0", "--records")
    assert result.exit_code == 0
    batch_lines = [fields(line) for line in result.stdout.splitlines()
                   if line.startswith("baseOffset")]
    assert [b["isvalid"] for b in batch_lines] == ["true", "false", "true"]
    assert "CRC mismatch" in result.stdout
    assert result.stderr == "warning: 1 of 3 batches of t-0 are damaged\n"
    assert "Traceback" not in result.stdout + result.stderr
    # Readers check CRCs: tail prints the records before the damaged batch, then stops with
    # one error line.
    tailed = run("tail", "t", "--from-beginning")
    assert tailed.exit_code == 1
    assert tailed.stdout == "a\nb\n"
    assert len(tailed.stderr.splitlines()) == 1
    assert tailed.stderr.startswith("error: corrupt record batch in t-0 at offset 2:")
    as_json = run("dump", "t", "--partition", "0", "--format", "json")
    assert [json.loads(line)["is_valid"] for line in as_json.stdout.splitlines()] == [
        True, False, True]


def test_segment_column_follows_rolls(run, api, produce) -> None:
    api.create_topic("t", 1, {"segment.bytes": "100"})
    for i in range(3):
        produce(api, "t", [b"value-%d" % i])
    bases = api.partition_log("t", 0).segment_bases()
    assert len(bases) == 3
    lines = run("dump", "t", "--partition", "0").stdout.splitlines()
    assert [fields(line)["segment"] for line in lines] == [str(b) for b in bases]


def test_empty_partition_prints_nothing(run, api) -> None:
    api.create_topic("t")
    result = run("dump", "t", "--partition", "0")
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""


def test_partition_is_required_and_must_exist(run, api) -> None:
    api.create_topic("t")
    assert run("dump", "t").exit_code == 2
    missing = run("dump", "t", "--partition", "3")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1


# --- library ---------------------------------------------------------------------------------


def test_iter_batches_skips_nothing_and_reads_from_log_start(three_batches) -> None:
    log = three_batches.partition_log("t", 0)
    assert [b.base_offset for b in iter_batches(log, read_bytes=1)] == [0, 2, 5]
    three_batches.delete_records({logstore.TopicPartition("t", 0): 3})
    # The batch holding the new log start offset is still stored and shown whole.
    assert [b.base_offset for b in iter_batches(log)] == [2, 5]


def test_describe_batch_survives_a_broken_header() -> None:
    for garbage in (b"", b"\x00" * 10, b"\x00" * 16 + b"\x07" + b"\x00" * 60):
        info = describe_batch(garbage, segment=0, position=0, records=True)
        assert not info.is_valid and info.error and info.computed_crc is None


def test_last_sequence_wraps_like_kafka() -> None:
    assert last_sequence(-1, 5) == -1
    assert last_sequence(10, 4) == 14
    assert last_sequence(2**31 - 2, 3) == 1
