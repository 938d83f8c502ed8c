"""Helpers shared by the CLI commands: errors, option parsing, formatting and progress.

Conventions every command follows (see ``logstore --help``):

* stdout carries only the command's result, as plain text by default or as JSON with
  ``--format json`` (one document for list/describe/maintenance; one object per line, "JSON
  Lines", for record and batch streams), so output can be piped;
* progress, summaries and errors go to stderr; progress bars only when stderr is a terminal;
* a user error is raised as :class:`CliError` (or a :class:`~logstore.errors.LogstoreError`)
  and printed by the root group as one ``error: ...`` line.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, Any, TypeVar

import click

from logstore.types import ConsumerRecord

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A user error: printed as one ``error: <message>`` line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {one_line(self.format_message())}", file=file or sys.stderr)


def one_line(message: str) -> str:
    """``message`` with line breaks folded into spaces (errors must stay one line)."""
    return re.sub(r"\s*\n\s*", " ", message).strip()


def example(*lines: str) -> str:
    """A click epilog showing example invocations (``\\b`` keeps click from rewrapping them)."""
    return "Example:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def format_option(f: F) -> F:
    """The ``--format text|json`` option, passed to the command as ``fmt``."""
    return click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
        show_default=True, help="Plain text for people, JSON for programs.",
    )(f)


# --- parsing -----------------------------------------------------------------------------------


def parse_key_value(text: str, what: str) -> tuple[str, str]:
    """Split ``KEY=VALUE`` at the first ``=``; the key must not be empty (the value may be)."""
    key, found, value = text.partition("=")
    if not found or not key:
        raise CliError(f"invalid {what} {text!r}: expected KEY=VALUE")
    return key, value


def parse_config(items: Iterable[str]) -> dict[str, str]:
    """``--config k=v`` options as a dict; a key given twice is an error (which would win?)."""
    config: dict[str, str] = {}
    for item in items:
        key, value = parse_key_value(item, "--config")
        if key in config:
            raise CliError(f"config {key!r} is given twice")
        config[key] = value
    return config


def parse_headers(items: Iterable[str]) -> list[tuple[str, bytes]]:
    """``--header k=v`` options as record headers (repeats allowed, as Kafka allows).

    Values keep the exact bytes of the command line (``surrogateescape`` undoes Python's
    decoding of non-UTF-8 arguments); keys must be valid UTF-8, as the record format requires.
    """
    headers: list[tuple[str, bytes]] = []
    for item in items:
        key, value = parse_key_value(item, "--header")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise CliError(f"header key {key!r} is not valid UTF-8") from None
        headers.append((key, value.encode("utf-8", "surrogateescape")))
    return headers


_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                      "w": 7 * 86_400_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
# Kafka's times are signed 64-bit milliseconds; a longer duration is a typo, not a wish.
MAX_DURATION_MS = 2**63 - 1
_MAX_DURATION_DIGITS = len(str(MAX_DURATION_MS))


def parse_duration_ms(text: str) -> int:
    """A duration such as ``500ms``, ``30s``, ``10m``, ``2h``, ``1d``, ``1w`` or ``1h30m``, at
    most :data:`MAX_DURATION_MS`; raises :class:`CliError` for anything else."""
    compact = text.strip().lower()
    pos = total = 0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        # Checked before int(): Python refuses to convert strings of over 4300 digits.
        digits = match.group(1).lstrip("0") or "0"
        if len(digits) > _MAX_DURATION_DIGITS:
            total = MAX_DURATION_MS + 1
        else:
            total += int(digits) * _DURATION_UNITS_MS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise CliError(
            f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d, w), e.g. 10m"
        )
    if total > MAX_DURATION_MS:
        raise CliError(f"invalid duration {text!r}: too large (at most {MAX_DURATION_MS} ms)")
    return total


def parse_since(text: str, now_ms: int) -> int:
    """A point in time as epoch milliseconds: a duration before ``now_ms`` (``10m``, ``2h``,
    ``1d``) or an ISO-8601 date/time (local time unless it has a UTC offset or ``Z``).

    Never before the epoch (0: Kafka's negative timestamps are special values); any text gives
    a time or raises :class:`CliError`, never another exception."""
    if _DURATION.match(text.strip().lower()):
        return max(0, now_ms - parse_duration_ms(text))
    try:
        return parse_iso_time(text, "--since")
    except CliError:
        raise CliError(
            f"invalid --since {text!r}: use a duration (10m, 2h, 1d) or an ISO-8601 time "
            "(2024-05-01T12:00:00Z)"
        ) from None


def parse_iso_time(text: str, option: str) -> int:
    """An ISO-8601 date or date/time as epoch milliseconds, read as ``--since`` reads one
    (local time unless it has a UTC offset or ``Z``); errors name ``option``."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"invalid {option} {text!r}: use an ISO-8601 time such as 2024-05-01T12:00:00Z "
            "(local time unless it has an offset or Z)"
        ) from None
    if moment.tzinfo is None:
        moment = _local_time(moment)
    # Exact integer arithmetic (a float timestamp rounds microseconds up into the next ms).
    return max(0, (moment - _EPOCH) // _ONE_MS)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def _local_time(moment: datetime) -> datetime:
    """A naive date/time read as the user's local time."""
    try:
        return moment.astimezone()
    except (OverflowError, ValueError):
        # The local-time functions cannot place the first and last days of datetime's range
        # (0001-01-01 gives "year 0 is out of range"). There UTC is within a day of the
        # answer, which lies before the epoch (clamped to 0) or in year 9999 either way.
        return moment.replace(tzinfo=UTC)


# --- formatting ----------------------------------------------------------------------------------


def iso_ms(timestamp_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with millisecond precision (``...T12:00:00.000Z``).
    Raises ValueError outside years 1 to 9999 (see :func:`record_json`)."""
    try:
        moment = _EPOCH + timedelta(milliseconds=timestamp_ms)
    except OverflowError:
        raise ValueError(f"timestamp {timestamp_ms} ms is outside years 1 to 9999") from None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_seconds(seconds: float) -> str:
    """A short human duration: ``850 ms``, ``1.25 s``, ``3 min 5 s``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun, plural unless ``n`` is 1 (``3 segments``, ``1 stale copy``)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces (no trailing spaces, no borders)."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def dash(value: object) -> str:
    """A table cell: ``-`` for a missing value (None), as kafka-consumer-groups prints."""
    return "-" if value is None else str(value)


def to_json(value: object) -> str:
    """Compact one-line JSON (UTF-8 text kept as is, not \\u-escaped)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def echo_json(value: object) -> None:
    """Print one JSON document, indented for reading (still valid for ``json.loads``)."""
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _put_bytes(out: dict[str, object], name: str, data: bytes | None) -> None:
    """Store ``data`` under ``name``: text if it is UTF-8, else base64 plus ``<name>_encoding``."""
    if data is None:
        out[name] = None
        return
    try:
        out[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        out[name] = base64.b64encode(data).decode("ascii")
        out[f"{name}_encoding"] = "base64"


def _record_iso_time(timestamp_ms: int) -> str | None:
    """A record's timestamp in ISO-8601, or None for one beyond year 9999: producers may set
    any timestamp up to 2**63-1 ms, about 292 million years."""
    try:
        return iso_ms(timestamp_ms)
    except ValueError:
        return None


def record_json(record: ConsumerRecord) -> dict[str, object]:
    """The JSON object ``tail --format json`` prints for one record (``timestamp_iso`` is null
    for a timestamp beyond year 9999)."""
    out: dict[str, object] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "timestamp_iso": _record_iso_time(record.timestamp_ms),
    }
    _put_bytes(out, "key", record.key)
    _put_bytes(out, "value", record.value)
    headers = []
    for key, value in record.headers:
        header: dict[str, object] = {"key": key}
        _put_bytes(header, "value", value)
        headers.append(header)
    out["headers"] = headers
    return out


def printable(data: bytes | None) -> str | None:
    """``data`` as text if it is UTF-8 without control characters, else None."""
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


# --- terminals ------------------------------------------------------------------------------------


def binary_stdin() -> IO[bytes]:
    """stdin as bytes, so input that is not UTF-8 passes through unchanged."""
    return sys.stdin.buffer


def binary_stdout() -> IO[bytes]:
    """stdout as bytes (flush text written before, so the two never interleave wrongly)."""
    sys.stdout.flush()
    return sys.stdout.buffer


def stdin_is_tty() -> bool:
    """Whether a person may be typing on stdin (a function so tests can pretend)."""
    return sys.stdin is not None and sys.stdin.isatty()


def stderr_is_tty() -> bool:
    """Whether progress bars would be seen (a function so tests can pretend)."""
    return sys.stderr is not None and sys.stderr.isatty()


@contextmanager
def progress(items: Iterable[T], *, length: int, label: str) -> Iterator[Iterable[T]]:
    """Iterate ``items`` with a progress bar on stderr, drawn only when stderr is a terminal
    (so pipes and logs never receive progress noise)."""
    with click.progressbar(
        items, length=length, label=label, file=sys.stderr, hidden=not stderr_is_tty()
    ) as bar:
        yield bar
