"""``logstore produce``: stdin lines to records."""

from __future__ import annotations

import base64
import json

import pytest


def test_lines_become_values_exactly(run, api, consume) -> None:
    api.create_topic("t")
    # Only the trailing \n goes: empty lines are empty values, \r and spaces stay, and a last
    # line without a newline is still a record.
    result = run("produce", "t", input=b"a\n\n  b \r\nlast")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == "produced 4 records to t\n"
    records = consume(api, "t")
    assert [r.value for r in records] == [b"a", b"", b"  b \r", b"last"]
    assert all(r.key is None and r.headers == () for r in records)


def test_empty_input_produces_nothing(run, api, consume) -> None:
    api.create_topic("t")
    result = run("produce", "t", input=b"")
    assert result.exit_code == 0
    assert result.stderr == "produced 0 records to t\n"
    assert consume(api, "t") == []


def test_key_separator_headers_and_partition(run, api, consume) -> None:
    api.create_topic("t", 3)
    result = run("produce", "t", "--key-separator", "::", "--header", "source=cli",
                 "--header", "trace=a=b", "--header", "empty=", "--partition", "2",
                 input=b"k1::v1\nk2::v::2\n::no key\n")
    assert result.exit_code == 0, result.stderr
    assert consume(api, "t", 0) == [] and consume(api, "t", 1) == []
    records = consume(api, "t", 2)
    assert [(r.key, r.value) for r in records] == [(b"k1", b"v1"), (b"k2", b"v::2"),
                                                   (b"", b"no key")]
    expected_headers = (("source", b"cli"), ("trace", b"a=b"), ("empty", b""))
    assert all(r.headers == expected_headers for r in records)


def test_keys_choose_partitions_like_kafka(run, api, consume) -> None:
    api.create_topic("t", 4)
    lines = b"".join(b"same-key\t%d\n" % i for i in range(20))
    assert run("produce", "t", "--key-separator", "\t", input=lines).exit_code == 0
    counts = [len(consume(api, "t", p)) for p in range(4)]
    assert sorted(counts) == [0, 0, 0, 20]  # one key, one partition, order kept
    (partition,) = [p for p in range(4) if counts[p]]
    assert [r.value for r in consume(api, "t", partition)] == [b"%d" % i for i in range(20)]


def test_line_without_separator_stops_the_input(run, api, consume) -> None:
    api.create_topic("t")
    result = run("produce", "t", "--key-separator", ":", input=b"a:1\nb:2\nbroken\nc:3\n")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: line 3 has no key separator")
    assert "the 2 records before it were produced" in lines[0]
    assert [r.value for r in consume(api, "t")] == [b"1", b"2"]


def test_non_utf8_bytes_round_trip(run, api, consume) -> None:
    api.create_topic("t")
    raw = b"\xff\xfe\x00bin\x80"
    result = run("produce", "t", "--key-separator", "|", "--header", "h=v",
                 input=b"\xc3(|" + raw + b"\n")
    assert result.exit_code == 0, result.stderr
    (record,) = consume(api, "t")
    assert record.key == b"\xc3(" and record.value == raw
    # tail's text format writes the raw bytes back ...
    text = run("tail", "t", "--from-beginning", "--print-key", "--key-separator", "|")
    assert text.stdout_bytes == b"\xc3(|" + raw + b"\n"
    # ... and JSON marks what is not UTF-8 as base64.
    (line,) = run("tail", "t", "--from-beginning", "--format", "json").stdout.splitlines()
    obj = json.loads(line)
    assert obj["key_encoding"] == "base64" and base64.b64decode(obj["key"]) == b"\xc3("
    assert obj["value_encoding"] == "base64" and base64.b64decode(obj["value"]) == raw
    assert obj["headers"] == [{"key": "h", "value": "v"}]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(run, api, consume, codec: str) -> None:
    api.create_topic("t")
    payload = b"".join(b"compressible line %d\n" % (i % 3) for i in range(50))
    assert run("produce", "t", "--compression", codec, input=payload).exit_code == 0
    assert len(consume(api, "t")) == 50
    dumped = run("dump", "t", "--partition", "0").stdout
    assert f"compresscodec: {codec}" in dumped


def test_unknown_compression_is_a_usage_error(run, api) -> None:
    api.create_topic("t")
    result = run("produce", "t", "--compression", "brotli", input=b"x\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_unknown_topic_fails_before_reading_input(run) -> None:
    result = run("produce", "nosuch", input=b"x\n")
    assert result.exit_code == 1
    assert result.stderr == "error: unknown topic 'nosuch'\n"


def test_partition_out_of_range(run, api) -> None:
    api.create_topic("t", 2)
    result = run("produce", "t", "--partition", "2", input=b"x\n")
    assert result.exit_code == 1
    assert result.stderr == "error: topic t has 2 partitions; partition 2 does not exist\n"


@pytest.mark.parametrize("header", ["novalue", "=v"])
def test_bad_header(run, api, header: str) -> None:
    api.create_topic("t")
    result = run("produce", "t", "--header", header, input=b"x\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid --header")


def test_empty_key_separator_is_a_usage_error(run, api) -> None:
    api.create_topic("t")
    result = run("produce", "t", "--key-separator", "", input=b"x\n")
    assert result.exit_code == 2
    assert "--key-separator" in result.stderr


def test_refused_record_names_its_line(run, api, consume) -> None:
    api.create_topic("t", 1, {"max.message.bytes": "200"})
    result = run("produce", "t", input=b"small\n" + b"x" * 500 + b"\nafter\n")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: line 2: ")
    assert "max.message.bytes" in lines[0]
    assert [r.value for r in consume(api, "t")] == [b"small"]


def test_delivery_error_is_reported_once(run, api, monkeypatch) -> None:
    from logstore.errors import StorageError
    from logstore.log.partition_log import PartitionLog

    api.create_topic("t")

    def broken(self: PartitionLog, batches: object, **options: object) -> None:
        raise StorageError("disk on fire")

    monkeypatch.setattr(PartitionLog, "append_each", broken)
    result = run("produce", "t", input=b"a\nb\nc\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: delivery to t failed: disk on fire (0 records were produced)"]
