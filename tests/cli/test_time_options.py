"""The time options' parsers (``tail --since``, ``groups reset-offsets --to-datetime``, durations)
over odd input: every text gives a time or a :class:`CliError`, never another exception, in
any local time zone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from logstore.cli.output import (
    MAX_DURATION_MS,
    CliError,
    parse_duration_ms,
    parse_since,
    record_json,
)

from logstore.types import ConsumerRecord

NOW_MS = 1_700_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# UTC, the zones furthest east and west, and one with daylight saving time.
ZONES = ("UTC", "Pacific/Kiritimati", "Etc/GMT+12", "America/New_York")
LATEST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH
             + timedelta(days=2)) // timedelta(milliseconds=1)


@contextmanager
def local_zone(name: str) -> Iterator[None]:
    """The process's local time zone set to ``name`` (restored after)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def since_or_error(text: str) -> int | None:
    """parse_since's time, or None for a CliError; anything else fails the test."""
    try:
        result = parse_since(text, NOW_MS)
    except CliError as exc:
        assert exc.format_message().startswith(("invalid --since", "invalid duration"))
        assert "\n" not in exc.format_message()
        return None
    assert 0 <= result <= LATEST_MS
    return result


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("text", [
    "0001-01-01", "0001-01-01T00:00", "0001-01-01T23:59:59", "0001-01-02",
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59", "1969-12-30T00:00:00",
])
def test_the_far_past_is_the_epoch(zone: str, text: str) -> None:
    with local_zone(zone):
        assert parse_since(text, NOW_MS) == 0


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("text", [
    "9999-12-31", "9999-12-31T23:59:59", "9999-12-31T23:59:59.999999",
    "9999-12-31T23:59:59-23:59", "9999-12-30T12:00",
])
def test_the_far_future_is_a_time_after_now(zone: str, text: str) -> None:
    with local_zone(zone):
        assert NOW_MS < parse_since(text, NOW_MS) <= LATEST_MS


def test_iso_times_are_exact_to_the_millisecond() -> None:
    # A float timestamp would round .999999 up into the next millisecond.
    assert parse_since("2023-11-14T22:13:20.999999Z", NOW_MS) == NOW_MS + 999


@pytest.mark.parametrize("text", [
    "1" * 5000 + "s",                 # more digits than Python converts to int
    "99999999999999999999w", "9223372036854775808ms", "15250284453w", "15250284452w1w",
])
def test_durations_too_large_are_one_error(text: str) -> None:
    with pytest.raises(CliError, match=r"invalid duration .*too large"):
        parse_duration_ms(text)
    assert since_or_error(text) is None


def test_the_largest_duration() -> None:
    assert parse_duration_ms(f"{MAX_DURATION_MS}ms") == MAX_DURATION_MS
    assert parse_duration_ms("0" * 5000 + "5s") == 5000
    assert parse_since(f"{MAX_DURATION_MS}ms", NOW_MS) == 0


@given(st.text())
def test_any_text_is_a_time_or_one_error(text: str) -> None:
    since_or_error(text)


@given(st.from_regex(r"\A\s*([0-9]{1,25}(ms|s|m|h|d|w|M|H|D|W)){1,3}\s*\Z"))
def test_any_duration_is_a_time_or_too_large(text: str) -> None:
    compact = text.strip().lower()
    assert since_or_error(text) is not None or "too large" in _message(compact)


def _message(text: str) -> str:
    try:
        parse_duration_ms(text)
    except CliError as exc:
        return exc.format_message()
    return ""


@given(moment=st.datetimes(timezones=st.none() | st.timezones()),
       zone=st.sampled_from(ZONES), separator=st.sampled_from(["T", " "]))
def test_any_iso_time_in_any_zone(moment: datetime, zone: str, separator: str) -> None:
    with local_zone(zone):
        result = since_or_error(moment.isoformat(sep=separator))
        assert result is not None
        if moment.tzinfo is not None and moment.utcoffset() is not None:
            assert result == max(0, (moment - EPOCH) // timedelta(milliseconds=1))


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_any_record_timestamp_prints_as_json(timestamp_ms: int) -> None:
    record = ConsumerRecord("t", 0, 0, timestamp_ms, None, b"v", ())
    printed = record_json(record)["timestamp_iso"]
    if timestamp_ms < 253_402_300_800_000:  # 10000-01-01
        assert isinstance(printed, str) and printed.endswith("Z")
    else:
        assert printed is None
