"""The shared CLI helpers: parsing, formatting, JSON of records."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from logstore.cli.output import (
    CliError,
    format_seconds,
    iso_ms,
    parse_config,
    parse_duration_ms,
    parse_headers,
    parse_since,
    printable,
    record_json,
    table,
)

from logstore.types import ConsumerRecord

NOW_MS = 1_700_000_000_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("30s", 30_000), ("10m", 600_000), ("2h", 7_200_000),
     ("1d", 86_400_000), ("1w", 604_800_000), ("1h30m", 5_400_000), (" 2H ", 7_200_000)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "1h 30m", "-5m", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(CliError, match="invalid duration"):
        parse_duration_ms(text)


def test_since() -> None:
    assert parse_since("10m", NOW_MS) == NOW_MS - 600_000
    assert parse_since("2023-11-14T22:13:20Z", NOW_MS) == NOW_MS
    assert parse_since("2023-11-14T23:13:20+01:00", NOW_MS) == NOW_MS
    local = datetime.fromtimestamp(NOW_MS / 1000).isoformat()  # naive: local time
    assert parse_since(local, NOW_MS) == NOW_MS
    assert parse_since("100000w", NOW_MS) == 0  # never before the epoch
    with pytest.raises(CliError, match="invalid --since"):
        parse_since("last tuesday", NOW_MS)


def test_config_parsing() -> None:
    assert parse_config(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(CliError, match="expected KEY=VALUE"):
        parse_config(["novalue"])
    with pytest.raises(CliError, match="expected KEY=VALUE"):
        parse_config(["=1"])
    with pytest.raises(CliError, match="given twice"):
        parse_config(["a=1", "a=2"])


def test_headers_keep_repeats_and_raw_bytes() -> None:
    raw = b"\xff".decode("utf-8", "surrogateescape")  # how Python passes a non-UTF-8 argv
    assert parse_headers(["a=1", "a=2", f"b={raw}"]) == [("a", b"1"), ("a", b"2"),
                                                       ("b", b"\xff")]
    with pytest.raises(CliError, match="not valid UTF-8"):
        parse_headers([f"{raw}=v"])


def test_record_json_base64_marks_only_what_is_not_utf8() -> None:
    record = ConsumerRecord("t", 1, 7, NOW_MS, b"\xff", "é".encode(), (("h", b"\x80"),
                                                                      ("n", None)))
    assert record_json(record) == {
        "topic": "t", "partition": 1, "offset": 7, "timestamp": NOW_MS,
        "timestamp_iso": "2023-11-14T22:13:20.000Z",
        "key": base64.b64encode(b"\xff").decode(), "key_encoding": "base64",
        "value": "é",
        "headers": [{"key": "h", "value": "gA==", "value_encoding": "base64"},
                    {"key": "n", "value": None}],
    }


def test_formatting() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert datetime.fromisoformat(iso_ms(NOW_MS + 5)) == datetime.fromtimestamp(
        (NOW_MS + 5) / 1000, tz=UTC)
    assert format_seconds(0.25) == "250 ms"
    assert format_seconds(1.5) == "1.50 s"
    assert format_seconds(125) == "2 min 5 s"
    assert table(["A", "LONGER"], [(1, "x"), ("wide", "")]) == "A     LONGER\n1     x\nwide"
    assert printable(b"hi there") == "hi there"
    assert printable(b"\x00x") is None and printable(b"\xff") is None and printable(None) is None
