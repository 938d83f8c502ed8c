"""``logstore tail``: print records of a topic, like ``tail`` (and ``tail -f``) for files.

Without ``--follow`` the end of each partition is fixed when the command starts (its high
watermark then), so the command always terminates, however fast producers append. With
``--follow`` it keeps polling; SIGINT and SIGTERM end it cleanly with exit code 0. A signal
never cuts a record in half: records are written one poll at a time, and a signal is acted on
between polls.

With ``--group`` the command consumes as a member of a consumer group (see
:func:`consume_group`): the group assigns the partitions, reading starts at the group's
committed offsets, and what was printed is committed after every poll (explicitly, not by
auto-commit, which would also commit records read but not printed: past ``--max-messages`` or
past the end offsets). Signals are acted on between polls in both modes, so the consumer
always closes and leaves the group; a bounded read stopped that way says ``aborted`` and exits
with 128 + the signal number (130 for Ctrl-C), as the shell reports a killed command.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

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
from logstore.cli.signals import StopOnSignal

from logstore.client.consumer import Consumer
from logstore.errors import CommitFailedError, LogstoreError
from logstore.types import ConsumerRecord, OffsetAndMetadata, TopicPartition

if TYPE_CHECKING:
    from logstore.cli.main import CliState

    from logstore import Log

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


def follow_spans(consumer: Consumer, spans: Sequence[Span], printer: RecordPrinter,
                 limit: int | None) -> None:
    """Print from each span's start onwards until a signal or ``limit`` records."""
    consumer.assign([s.tp for s in spans])
    for span in spans:
        consumer.seek(span.tp, span.start)
    printed = 0
    with StopOnSignal() as stopper:
        while not stopper.stopped and (limit is None or printed < limit):
            records = consumer.poll(timeout_ms=_FOLLOW_POLL_MS)
            if limit is not None:
                records = records[: limit - printed]
            printer.write(records)
            printed += len(records)


class GroupProgress:
    """The rebalance listener of ``tail --group``, and what the command has committed.

    ``assigned`` is True while the member holds a current assignment (from
    ``on_partitions_assigned`` to the next revocation): only then do empty polls mean that
    there is nothing to read. ``committed`` holds, per owned partition, the offset this command
    last committed, so a poll commits only partitions that moved (each commit is a metadata
    store transaction). Partitions that arrive are forgotten, so their start position is
    committed once: a group that starts at the log end then remembers where it started.
    """

    def __init__(self) -> None:
        self.assigned = False
        self.committed: dict[TopicPartition, int] = {}

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Nothing to commit here: every printed record was committed right after its poll.
        self.assigned = False
        for tp in revoked:
            self.committed.pop(tp, None)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = True
        for tp in assigned:
            self.committed.pop(tp, None)


def _before_ends(consumer: Consumer, records: Sequence[ConsumerRecord],
                 ends: dict[TopicPartition, int]) -> list[ConsumerRecord]:
    """``records`` below their partition's end offset; a partition with records at or past it
    is moved back to the first of them (so its position, which is committed, counts only
    printed records) and paused."""
    kept = []
    cut: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if tp in cut:
            continue
        if record.offset < ends.get(tp, 0):
            kept.append(record)
        else:
            cut[tp] = record.offset
    for tp, offset in cut.items():
        consumer.seek(tp, offset)
        consumer.pause(tp)
    return kept


def _caught_up(consumer: Consumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every assigned partition reached its end offset (those that did are paused)."""
    done = True
    for tp in consumer.assignment():
        if consumer.position(tp) < ends.get(tp, 0):
            done = False
        else:
            consumer.pause(tp)
    return done


def _commit_positions(consumer: Consumer, progress: GroupProgress, group_id: str) -> None:
    """Commit the position of every assigned partition that moved: the offset after its last
    printed record (poll is limited to the records that will be printed, and records past the
    end were sought back over), or, for a partition with nothing printed yet, where it starts."""
    moved = {}
    for tp in consumer.assignment():
        position = consumer.position(tp)
        if progress.committed.get(tp) != position:
            moved[tp] = position
    if not moved:
        return
    try:
        consumer.commit({tp: OffsetAndMetadata(offset) for tp, offset in moved.items()})
    except LogstoreError as exc:
        # The group is rebalancing (the partitions may have moved) or the metadata store is
        # busy: the records stay uncommitted, to be committed after the next poll or printed
        # again by the partition's next owner (at least once, never lost).
        if not (exc.retriable or isinstance(exc, CommitFailedError)):
            raise
        click.echo(f"warning: could not commit the offsets of group {group_id}: {exc} (records "
                   "printed since the last commit may be printed again)", err=True)
        return
    progress.committed.update(moved)


def consume_group(consumer: Consumer, topic: str, ends: dict[TopicPartition, int] | None,
                  printer: RecordPrinter, limit: int | None, stopper: StopOnSignal) -> int | None:
    """Subscribe ``consumer`` (which has a group id) to ``topic`` and print what it polls,
    committing after each poll, until ``limit`` records, a signal, or, with ``ends`` (None:
    follow), until every partition assigned to it reached its end offset. Returns the signal
    that stopped it, if one did.

    The assignment arrives during a poll (after the join and sync), so "caught up" is judged
    only while the member holds a current assignment; an empty assignment (more members than
    partitions) is caught up at once.
    """
    progress = GroupProgress()
    consumer.subscribe([topic], listener=progress)
    printed = idle = 0
    while limit is None or printed < limit:
        if stopper.stopped:
            return stopper.signum
        wanted = 500 if limit is None else min(500, limit - printed)
        records = consumer.poll(timeout_ms=_FOLLOW_POLL_MS if ends is None else _BOUNDED_POLL_MS,
                                max_records=wanted)
        if ends is not None:
            records = _before_ends(consumer, records, ends)
        printer.write(records)
        printed += len(records)
        done = ends is not None and progress.assigned and _caught_up(consumer, ends)
        _commit_positions(consumer, progress, consumer.group_id or "")
        if done:
            return None
        if ends is not None and progress.assigned:
            idle = 0 if records else idle + 1
            if idle >= _MAX_IDLE_POLLS:
                return None  # the log shrank below the end offsets (see print_spans)
    return None


def tail_group(log: Log, topic: str, group_id: str, *, from_beginning: bool, follow: bool,
               limit: int | None, printer: RecordPrinter) -> int | None:
    """``tail --group``: consume as a member of ``group_id`` (see :func:`consume_group`), then
    leave the group. Returns the signal that interrupted a bounded read (None otherwise)."""
    description = log.describe_topic(topic)  # an unknown topic is an error, not no partitions
    ends = None if follow else {
        TopicPartition(topic, p.partition): p.high_watermark for p in description.partitions}
    # Signals only set a flag (see cli/signals.py), so the consumer always closes: it commits
    # nothing more (everything printed is committed already) and leaves the group, which hands
    # its partitions to the other members at once instead of after the session timeout.
    with StopOnSignal() as stopper, log.consumer(
        group_id=group_id, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        client_id=f"logstore-tail-{os.getpid()}",
    ) as consumer:
        interrupted = consume_group(consumer, topic, ends, printer, limit, stopper)
    return None if follow else interrupted


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
    "logstore tail orders --partition 0 --offset 42 -f",
    "logstore tail orders --group billing --from-beginning"))
@click.argument("topic")
@click.option("--from-beginning", is_flag=True,
              help="Start at each partition's log start (with --group: only partitions "
                   "the group has no committed offset for).")
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
@click.option("--group", "group_id", metavar="GROUP", default=None,
              help="Consume as a member of consumer group GROUP, from its committed offsets, "
                   "committing what was printed (see above).")
@click.option("--print-key", is_flag=True, help="Text format: print KEY SEP VALUE.")
@click.option("--key-separator", default="\t", show_default="tab", metavar="SEP",
              help="Separator for --print-key.")
@format_option
@click.pass_obj
def tail(state: CliState, topic: str, from_beginning: bool, offset: int | None,
         since: str | None, lines: int | None, partition: int | None, follow: bool,
         max_messages: int | None, group_id: str | None, print_key: bool, key_separator: str,
         fmt: str) -> None:
    """Print records of TOPIC: by default the last 10 of each partition, then exit.

    Text output is each value's raw bytes on a line (null prints as an empty line); JSON
    output is one object per record per line, with keys, values and header values that are
    not UTF-8 base64-encoded and marked (e.g. "value_encoding": "base64").

    With --group GROUP it reads as a member of that consumer group, like
    kafka-console-consumer --group: the group assigns the partitions (shared with its other
    members) and each starts at the group's committed offset (without one: at the end, or at
    the log start with --from-beginning). After each batch of records is printed, their
    offsets are committed, so the next run continues where this one stopped (at least once:
    a batch printed just before a crash prints again). Without -f it stops at the end
    offsets its partitions had when it started. It leaves the group when it exits, also on
    Ctrl-C or SIGTERM. --offset, --since, -n and --partition do not apply with --group.
    """
    printer = RecordPrinter(binary_stdout(), fmt, print_key,
                            key_separator.encode("utf-8", "surrogateescape"))
    if group_id is not None:
        conflicting = [name for name, value in (
            ("--offset", offset), ("--since", since), ("-n/--lines", lines),
            ("--partition", partition)) if value is not None]
        if conflicting:
            raise click.UsageError(
                f"{' and '.join(conflicting)} cannot be combined with --group: the group "
                "assigns the partitions and its committed offsets say where to start")
        interrupted = tail_group(state.log(), topic, group_id, from_beginning=from_beginning,
                                 follow=follow, limit=max_messages, printer=printer)
        if interrupted is not None:  # stopped before the end: say so, as the shell would
            click.echo("aborted", err=True)
            click.get_current_context().exit(128 + interrupted)
        return
    log = state.log()
    start = start_of(from_beginning, offset, since, lines, log.clock.time_ms())
    spans = plan(log, topic, partition, start)
    with log.consumer(auto_offset_reset="earliest") as consumer:
        run = follow_spans if follow else print_spans
        run(consumer, spans, printer, max_messages)
