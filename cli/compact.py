"""``logstore compact``: run the log cleaner once, or on a schedule with ``--every``.

A thin command over the library: one pass is :meth:`logstore.Log.compact`, run once or on a
schedule by :func:`logstore.cli.schedule.run_job`. Output follows the CLI's conventions: the summary
(a table, or with ``--format json`` the report's ``to_dict()``) on stdout; the progress bar
(only when stderr is a terminal), a one-line total and errors on stderr.

Signals and ``--every``: see :mod:`logstore.cli.schedule`. A run stopped by SIGINT/SIGTERM
ends after the segment group it is rewriting (every rewrite is atomic; the cleaner checkpoint
keeps what was cleaned).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click
from logstore.cli import output
from logstore.cli.output import (
    count,
    echo_json,
    example,
    format_option,
    iso_ms,
    table,
    to_json,
)
from logstore.cli.schedule import interval_option, run_job
from logstore.compaction.job import DEFAULT_MEMORY_BYTES
from logstore.compaction.offset_map import MAX_MEMORY_BYTES, MIN_MEMORY_BYTES
from logstore.compaction.report import CompactionReport, CompactionStatus, PartitionCompaction

if TYPE_CHECKING:
    from logstore.cli.main import CliState

# The shortest interval between two redraws of the progress bar.
_REDRAW_S = 0.1
# Statuses whose byte and checkpoint figures describe work (done or, dry, planned).
_WORKED = (CompactionStatus.CLEANED, CompactionStatus.DRY_RUN, CompactionStatus.INTERRUPTED)


# --- output ------------------------------------------------------------------------------------


def _row(p: PartitionCompaction) -> tuple[object, ...]:
    worked = p.status in _WORKED
    return (
        p.topic, p.partition, p.status.value, "-" if p.due is None else p.due.value,
        "-" if p.status is CompactionStatus.BUSY else f"{p.dirty_ratio:.2f}",
        p.bytes_before if worked else "-", p.bytes_after if worked else "-",
        p.records_removed, p.tombstones_removed,
        "-" if p.status is CompactionStatus.BUSY else p.checkpoint_offset,
        p.duration_ms, p.reason,
    )


def summary_table(report: CompactionReport) -> str:
    """The text summary: one row per partition looked at."""
    return table(
        ["TOPIC", "PARTITION", "STATUS", "DUE", "DIRTY_RATIO", "BYTES_BEFORE", "BYTES_AFTER",
         "RECORDS_REMOVED", "TOMBSTONES_REMOVED", "CHECKPOINT", "DURATION_MS", "REASON"],
        [_row(p) for p in report.partitions],
    )


def summary_line(report: CompactionReport) -> str:
    """One line of totals (stderr, text format)."""
    if not report.partitions:
        return "no compacted topic to compact (cleanup.policy=compact selects them)"
    counts: dict[str, int] = {}
    for p in report.partitions:
        counts[p.status.value] = counts.get(p.status.value, 0) + 1
    statuses = ", ".join(f"{n} {status}" for status, n in counts.items())
    verb = "would remove" if report.dry_run else "removed"
    return (f"{count(len(report.partitions), 'partition')} ({statuses}): "
            f"{report.bytes_before} -> {report.bytes_after} bytes; {verb} "
            f"{count(report.records_removed, 'record')}, "
            f"{count(report.tombstones_removed, 'tombstone')}")


class _Progress:
    """``progress(done_bytes, total_bytes)`` for the job: a click progress bar on stderr,
    started at the first bytes read (a run with nothing to clean draws none) and finished
    before the run's summary is printed."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=max(total, 1), label="compacting",
                                          file=sys.stderr, show_pos=False)
            self._bar.__enter__()
        now = time.monotonic()
        if now - self._drawn < _REDRAW_S and done < total:
            return  # called per batch read: redraw a few times a second, not thousands
        self._drawn = now
        self._bar.length = max(self._bar.length, total)  # the total is an estimate
        self._bar.update(max(0, done - self._bar.pos))

    def finish(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.__exit__(None, None, None)


# --- the command -------------------------------------------------------------------------------


@click.command(epilog=example(
    "logstore compact orders --dry-run",
    "logstore compact --every 10m --format json >> compaction.jsonl",
))
@click.argument("topic", required=False)
@click.option("--partition", type=click.IntRange(min=0), default=None,
              help="Only this partition of TOPIC.")
@click.option("--dry-run", is_flag=True,
              help="Write nothing; report what one cleaning round per partition would do.")
@click.option("--force", is_flag=True,
              help="Clean whatever is dirty, even below min.cleanable.dirty.ratio.")
@format_option
@click.option("--every", "interval_s", metavar="DURATION", default=None,
              callback=interval_option,
              help="Keep running: compact now, then every DURATION (30s, 10m, 1h, 1d or "
                   "seconds), until SIGTERM or Ctrl-C.")
@click.option("--memory-bytes", type=click.IntRange(MIN_MEMORY_BYTES, MAX_MEMORY_BYTES),
              default=DEFAULT_MEMORY_BYTES, show_default=True,
              help="Size of the offset map (key -> latest offset), 24 bytes per key; more "
                   "keys than fit take several rounds.")
@click.pass_obj
def compact(state: CliState, topic: str | None, partition: int | None, dry_run: bool,
            force: bool, fmt: str, interval_s: float | None, memory_bytes: int) -> None:
    """Compact topics: keep the latest record of each key (and drop expired tombstones).

    Cleans every partition of every topic with cleanup.policy=compact (or compact,delete)
    that is due (its dirty ratio reached min.cleanable.dirty.ratio, a dirty record is older
    than max.compaction.lag.ms, or the delete horizon of a tombstone or transaction marker
    kept by the last cleaning passed), or only TOPIC, or one --partition of it. Partitions
    that another compactor is cleaning are skipped (status busy). Safe while producers and
    consumers use the log.

    Prints one row per partition: status (cleaned, dry-run, not-due, clean, busy,
    interrupted), why it was due (dirty-ratio, max-compaction-lag, delete-horizon, forced),
    dirty ratio before, segment bytes before and after, records and tombstones removed, the
    cleaner checkpoint after. With --every: one summary per run (with --format
    json one JSON object per line); SIGTERM or Ctrl-C stops after the segment group being
    rewritten and exits 0.
    """
    if partition is not None and topic is None:
        raise click.UsageError("--partition needs a TOPIC")
    log = state.log()
    options: dict[str, Any] = {"topic": topic, "partition": partition, "dry_run": dry_run,
                               "force": force, "memory_bytes": memory_bytes}
    show_progress = output.stderr_is_tty()
    bar = _Progress()
    if show_progress:
        options["progress"] = bar
    scheduled = interval_s is not None
    runs = 0

    def report(result: CompactionReport) -> None:
        nonlocal runs
        bar.finish()
        runs += 1
        if fmt == "json":
            if scheduled:
                click.echo(to_json(result.to_dict()))  # JSON Lines: one run per line
            else:
                echo_json(result.to_dict())
        else:
            if runs > 1:
                click.echo()
            click.echo(summary_table(result))
            line = summary_line(result)
            click.echo(f"{iso_ms(log.clock.time_ms())} {line}" if scheduled else line, err=True)
        sys.stdout.flush()  # a scheduler's summaries must not wait in a pipe's buffer

    def run_once(stop: threading.Event) -> CompactionReport:
        try:
            return log.compact(stop=stop, **options)
        finally:
            bar.finish()

    run_job(run_once, report, interval_s=interval_s, name="logstore-compact")
