"""``logstore tail``: print records of a topic, like ``tail`` (and ``tail -f``) for files.

Without ``--follow`` the end of each partition is fixed when the command starts (its high
watermark then), so the command always terminates, however fast producers append. With
``--follow`` it keeps polling; SIGINT and SIGTERM end it cleanly with exit code 0. A signal
never cuts a record in half: records are written one poll at a time, and a signal is acted on
between polls.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from types import FrameType
from typing import IO, TYPE_CHECKING, Sequence

import click

from logstore.cli.output import (
    CliError,
    binary_stdout,
    example,
    format_option,
    parse_since,
    record_json,
    to_json,
)
from logstore.client.consumer import Consumer
from logstore.types import ConsumerRecord, TopicPartition

if TYPE_CHECKING:
    from logstore import Log
    from logstore.cli.main import CliState

DEFAULT_LINES = 10
# How long a --follow poll waits for records: also the longest delay before a signal is seen.
_FOLLOW_POLL_MS = 250
_BOUNDED_POLL_MS = 200
# Empty polls in a row after which a bounded read gives up on reaching its end offset (only
# when the log shrank under it, e.g. truncated); 5 x 200 ms.
_MAX_IDLE_POLLS = 5


@dataclass(frozen=True, slots=True)
class Start:
    """Where reading starts: ``beginning``, ``offset`` (value), ``since`` (value = epoch ms) or
    ``last`` (value = records from the end)."""

    kind: str
    value: int = 0


@dataclass(frozen=True, slots=True)
class Span:
    """The offsets to print from one partition: [start, end); end is the high watermark at
    the time the command started (``tail -f`` goes past it)."""

    tp: TopicPartition
    start: int
    end: int


def plan(log: Log, topic: str, partition: int | None, start: Start) -> list[Span]:
    """The span of each selected partition. Raises CliError for a partition that does not
    exist, an ambiguous or out-of-range ``--offset``."""
    description = log.describe_topic(topic)
    partitions = list(description.partitions)
    if partition is not None:
        if partition >= description.partition_count:
            raise CliError(f"topic {topic} has {description.partition_count} partitions; "
                           f"partition {partition} does not exist")
        partitions = [partitions[partition]]
    if start.kind == "offset" and len(partitions) > 1:
        raise CliError(f"--offset needs --partition: topic {topic} has "
                       f"{len(partitions)} partitions")
    spans = []
    for p in partitions:
        low, end = p.log_start_offset, p.high_watermark
        if start.kind == "beginning":
            first = low
        elif start.kind == "offset":
            if not low <= start.value <= end:
                raise CliError(f"offset {start.value} is out of range for {topic}-{p.partition}: "
                               f"its offsets are {low} to {end}")
            first = start.value
        elif start.kind == "since":
            found = log.partition_log(topic, p.partition).offset_for_timestamp(start.value)
            first = end if found is None else max(low, found.offset)
        else:
            first = max(low, end - start.value)
        spans.append(Span(TopicPartition(topic, p.partition), first, end))
    return spans


class RecordPrinter:
    """Writes records to a binary stream: raw values (optionally ``key SEP value``) or JSON
    Lines. Each call writes and flushes whole lines, so readers never see half a record."""

    def __init__(self, out: IO[bytes], fmt: str, print_key: bool, separator: bytes) -> None:
        self._out = out
        self._json = fmt == "json"
        self._print_key = print_key
        self._separator = separator

    def write(self, records: Sequence[ConsumerRecord]) -> None:
        if not records:
            return
        lines = []
        for record in records:
            if self._json:
                lines.append(to_json(record_json(record)).encode("utf-8"))
            elif self._print_key:
                lines.append((record.key or b"") + self._separator + (record.value or b""))
            else:
                lines.append(record.value or b"")
        self._out.write(b"\n".join(lines) + b"\n")
        self._out.flush()


def print_spans(consumer: Consumer, spans: Sequence[Span], printer: RecordPrinter,
                limit: int | None) -> None:
    """Print each span in full, partition after partition, stopping after ``limit`` records."""
    printed = 0
    for span in spans:
        consumer.assign([span.tp])
        consumer.seek(span.tp, span.start)
        idle = 0
        while consumer.position(span.tp) < span.end and idle < _MAX_IDLE_POLLS:
            if limit is not None and printed >= limit:
                return
            wanted = 500 if limit is None else min(500, limit - printed)
            records = consumer.poll(timeout_ms=_BOUNDED_POLL_MS, max_records=wanted)
            idle = 0 if records else idle + 1
            records = [r for r in records if r.offset < span.end]
            printer.write(records)
            printed += len(records)


class _Stopper:
    """SIGINT/SIGTERM handling for ``--follow``: the handler only sets a flag, which the loop
    checks between polls. Raising from the handler instead could land anywhere in the library
    (even between taking a lock and entering its ``with`` block); a short poll timeout keeps
    the exit prompt."""

    def __init__(self) -> None:
        self.stopped = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopped = True

    def __enter__(self) -> _Stopper:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals to the embedding program
                break
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def follow_spans(consumer: Consumer, spans: Sequence[Span], printer: RecordPrinter,
                 limit: int | None) -> None:
    """Print from each span's start onwards until a signal or ``limit`` records."""
    consumer.assign([s.tp for s in spans])
    for span in spans:
        consumer.seek(span.tp, span.start)
    printed = 0
    with _Stopper() as stopper:
        while not stopper.stopped and (limit is None or printed < limit):
            records = consumer.poll(timeout_ms=_FOLLOW_POLL_MS)
            if limit is not None:
                records = records[: limit - printed]
            printer.write(records)
            printed += len(records)


def start_of(from_beginning: bool, offset: int | None, since: str | None, lines: int | None,
             now_ms: int) -> Start:
    """The start position the options ask for (at most one of them may be given)."""
    given = [name for name, value in (("--from-beginning", from_beginning), ("--offset", offset),
                                      ("--since", since), ("-n/--lines", lines))
             if value not in (None, False)]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} cannot be combined: choose one start")
    if from_beginning:
        return Start("beginning")
    if offset is not None:
        return Start("offset", offset)
    if since is not None:
        return Start("since", parse_since(since, now_ms))
    return Start("last", DEFAULT_LINES if lines is None else lines)


@click.command(epilog=example(
    "logstore tail orders -n 5",
    "logstore tail orders --since 10m --print-key --format json",
    "logstore tail orders --partition 0 --offset 42 -f"))
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Start at each partition's log start.")
@click.option("--offset", type=click.IntRange(min=0), default=None,
              help="Start at this offset (needs --partition if the topic has several).")
@click.option("--since", metavar="DURATION|TIME", default=None,
              help="Start at records from this time: 10m, 2h, 1d or ISO-8601 "
                   "(local time unless it has an offset or Z).")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None,
              help=f"Start this many records before each partition's end  [default: "
                   f"{DEFAULT_LINES}]")
@click.option("--partition", type=click.IntRange(min=0), default=None,
              help="Only this partition.")
@click.option("-f", "--follow", is_flag=True,
              help="Keep printing new records until interrupted (Ctrl-C or SIGTERM).")
@click.option("--max-messages", type=click.IntRange(min=1), default=None,
              help="Exit after printing this many records.")
@click.option("--print-key", is_flag=True, help="Text format: print KEY SEP VALUE.")
@click.option("--key-separator", default="\t", show_default="tab", metavar="SEP",
              help="Separator for --print-key.")
@format_option
@click.pass_obj
def tail(state: CliState, topic: str, from_beginning: bool, offset: int | None,
         since: str | None, lines: int | None, partition: int | None, follow: bool,
         max_messages: int | None, print_key: bool, key_separator: str, fmt: str) -> None:
    """Print records of TOPIC: by default the last 10 of each partition, then exit.

    Text output is each value's raw bytes on a line (null prints as an empty line); JSON
    output is one object per record per line, with keys, values and header values that are
    not UTF-8 base64-encoded and marked (e.g. "value_encoding": "base64").
    """
    log = state.log()
    start = start_of(from_beginning, offset, since, lines, log.clock.time_ms())
    spans = plan(log, topic, partition, start)
    printer = RecordPrinter(binary_stdout(), fmt, print_key,
                            key_separator.encode("utf-8", "surrogateescape"))
    with log.consumer(auto_offset_reset="earliest") as consumer:
        run = follow_spans if follow else print_spans
        run(consumer, spans, printer, max_messages)
