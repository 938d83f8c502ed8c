"""``logstore tier``: tiered storage from the command line (``run``, ``status``, ``check``,
``clean``).

Thin commands over the library: ``run`` is :meth:`logstore.Log.tier` (once, or on a schedule
with ``--every``), ``status`` is :meth:`logstore.Log.tier_status`, ``check`` is the object
store's ``check()`` and ``clean`` is :meth:`logstore.Log.clean_remote_orphans`. The object
store comes from the global ``--object-store`` option (or ``LOGSTORE_OBJECT_STORE``); only
``status`` works without one (it reads the manifest and the local segments).

Output follows the CLI's conventions: results on stdout (a table, or with ``--format json``
one JSON document; under ``--every`` one JSON object per line), progress bars (only when stderr
is a terminal), one-line totals and errors on stderr.

Signals and ``--every`` (``run``): see :mod:`logstore.cli.schedule`; a pass stopped by
SIGINT/SIGTERM ends after the upload in progress (an interrupted copy is never published: the
manifest only lists finished ones).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click
from logstore.cli import output
from logstore.cli.output import (
    CliError,
    count,
    dash,
    echo_json,
    example,
    format_option,
    iso_ms,
    one_line,
    parse_duration_ms,
    table,
    to_json,
)
from logstore.cli.schedule import interval_option, run_job

from logstore.errors import LogstoreError

if TYPE_CHECKING:
    from logstore.cli.main import CliState

    from logstore.tier.orphans import OrphanReport
    from logstore.tier.status import PartitionTierStatus
    from logstore.tier.tierer import TierReport

DEFAULT_GRACE = "1h"
NO_OBJECT_STORE = ("no object store: pass --object-store URL (e.g. logstore --object-store "
                   "file:///srv/logstore-bucket tier ...) or set LOGSTORE_OBJECT_STORE")


def _require_object_store(state: CliState) -> None:
    """Fail with one clear line before opening anything when no store was given."""
    if state.object_store_url is None:
        raise CliError(NO_OBJECT_STORE)


@contextmanager
def _quiet_library_warnings() -> Iterator[None]:
    """Hide the library's warnings (Python's last-resort handler would print them on stderr)
    where the command reports the same failure itself: a partition's failed copy is in its
    summary row, an unreachable store in ``check``'s error line."""
    logger = logging.getLogger("logstore")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


# --- run: output --------------------------------------------------------------------------------

RUN_HEADERS = ["TOPIC", "PARTITION", "STATUS", "SEGMENTS_COPIED", "BYTES_COPIED",
               "LOCAL_SEGMENTS_DELETED", "ERROR"]


def run_table(report: TierReport) -> str:
    """The text summary of one pass: one row per partition of a remote-storage topic."""
    return table(RUN_HEADERS, [
        (p.topic, p.partition, p.status, p.segments_copied, p.bytes_copied,
         p.local_segments_deleted, one_line(dash(p.error)))
        for p in report.partitions
    ])


def run_dict(report: TierReport) -> dict[str, Any]:
    """The JSON form of one pass."""
    return {
        "partitions": [asdict(p) for p in report.partitions],
        "segments_copied": report.segments_copied,
        "bytes_copied": report.bytes_copied,
        "local_segments_deleted": sum(p.local_segments_deleted for p in report.partitions),
        "failed": len(report.failed),
        "duration_ms": report.duration_ms,
    }


def run_line(report: TierReport) -> str:
    """One line of totals (stderr, text format)."""
    if not report.partitions:
        return "no topic to tier (remote.storage.enable=true selects them)"
    counts: dict[str, int] = {}
    for p in report.partitions:
        counts[p.status] = counts.get(p.status, 0) + 1
    statuses = ", ".join(f"{n} {status}" for status, n in counts.items())
    deleted = sum(p.local_segments_deleted for p in report.partitions)
    return (f"{count(len(report.partitions), 'partition')} ({statuses}): copied "
            f"{count(report.segments_copied, 'segment')} ({report.bytes_copied} bytes), "
            f"deleted {count(deleted, 'local segment')} in {report.duration_ms} ms")


class _Progress:
    """``progress(bytes_uploaded)`` for :meth:`logstore.Log.tier`: a click progress bar on
    stderr over the bytes pending when the pass started, drawn from the first upload (a pass
    with nothing to copy draws none) and finished before the pass's summary is printed."""

    def __init__(self) -> None:
        self._bar: Any = None
        self.total = 0

    def __call__(self, uploaded: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=max(self.total, 1), label="tiering",
                                          file=sys.stderr, show_pos=False)
            self._bar.__enter__()
        # Remote objects carry an index, so uploads can exceed the pending local bytes.
        self._bar.length = max(self._bar.length, self._bar.pos + uploaded)
        self._bar.update(uploaded)

    def finish(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.__exit__(None, None, None)


# --- the group ---------------------------------------------------------------------------------


@click.group(epilog=example(
    "logstore --object-store file:///srv/bucket tier run",
    "logstore tier status orders",
))
def tier() -> None:
    """Tiered storage: copy sealed segments of topics with remote.storage.enable=true to the
    object store (--object-store or LOGSTORE_OBJECT_STORE), show where data lives, check the
    store and clean what crashed uploads left in it.

    Local copies of tiered segments are then dropped by local.retention.ms /
    local.retention.bytes; every command reads tiered offsets from the store transparently.
    """


@tier.command("run", epilog=example(
    "logstore --object-store file:///srv/bucket tier run --topic orders",
    "LOGSTORE_OBJECT_STORE=s3://bucket/logs logstore tier run --every 1m --format json",
))
@click.option("--topic", default=None, help="Only this topic (default: every topic with "
              "remote.storage.enable=true).")
@click.option("--every", "interval_s", metavar="DURATION", callback=interval_option,
              default=None, help="Run again every DURATION (30s, 10m, 1h) until SIGTERM or "
              "Ctrl-C.")
@format_option
@click.pass_obj
def run_command(state: CliState, topic: str | None, interval_s: float | None,
                fmt: str) -> None:
    """Copy sealed segments to the object store now, then apply local retention.

    Copies every sealed segment not tiered yet of each partition of the topics with
    remote.storage.enable=true (or of --topic), then drops the local copies that
    local.retention.ms / local.retention.bytes no longer keep. Partitions another tierer is
    working on are skipped (status busy). Safe while producers and consumers use the log.

    Prints one row per partition: status (tiered, up-to-date, busy, failed, interrupted),
    segments and bytes copied, local segments deleted, and the error of a failed partition
    (it is retried on the next run; the exit code is 1). With --every: one summary per run
    (with --format json one JSON object per line); SIGTERM or Ctrl-C stops after the upload
    in progress and exits 0.
    """
    _require_object_store(state)
    log = state.log()
    show_progress = output.stderr_is_tty()
    bar = _Progress()
    scheduled = interval_s is not None
    runs = 0
    failures = 0

    def one_pass(stop: threading.Event) -> TierReport:
        if show_progress:
            bar.total = log.tier_pending_bytes(topic)
        try:
            with _quiet_library_warnings():
                return log.tier(topic, progress=bar if show_progress else None, stop=stop)
        finally:
            bar.finish()

    def report(result: TierReport) -> None:
        nonlocal runs, failures
        runs += 1
        failures += len(result.failed)
        if fmt == "json":
            if scheduled:
                click.echo(to_json(run_dict(result)))  # JSON Lines: one run per line
            else:
                echo_json(run_dict(result))
        else:
            if runs > 1:
                click.echo()
            click.echo(run_table(result))
            line = run_line(result)
            click.echo(f"{iso_ms(log.clock.time_ms())} {line}" if scheduled else line, err=True)
        sys.stdout.flush()  # a scheduler's summaries must not wait in a pipe's buffer

    run_job(one_pass, report, interval_s=interval_s, name="logstore-tier")
    if failures and not scheduled:
        click.echo(f"error: {count(failures, 'partition')} failed to tier (see ERROR; "
                   "the next run retries)", err=True)
        click.get_current_context().exit(1)


# --- status -------------------------------------------------------------------------------------

STATUS_HEADERS = ["TOPIC", "PARTITION", "REMOTE", "LOG_START", "REMOTE_RANGE", "LOCAL_RANGE",
                  "LOCAL_BYTES", "REMOTE_BYTES", "REMOTE_OBJECTS", "COPYING", "LAG_SEGMENTS",
                  "LAG_BYTES"]


def _range(start: int | None, end: int | None) -> str:
    return "-" if start is None or end is None else f"{start}-{end}"


def status_table(statuses: list[PartitionTierStatus]) -> str:
    """The text form of ``tier status``: one row per partition."""
    return table(STATUS_HEADERS, [
        (s.topic, s.partition, "on" if s.remote_storage_enable else "off", s.log_start_offset,
         _range(s.remote_start_offset, s.remote_end_offset),
         _range(s.first_local_offset, s.log_end_offset), s.local_bytes, s.remote_bytes,
         s.remote_objects, s.copies_in_progress, s.lag_segments, s.lag_bytes)
        for s in statuses
    ])


@tier.command("status", epilog=example(
    "logstore tier status",
    "logstore tier status orders --format json",
))
@click.argument("topic", required=False)
@format_option
@click.pass_obj
def status_command(state: CliState, topic: str | None, fmt: str) -> None:
    """Show where the data of each partition (of TOPIC) lives: locally, in the object store.

    Columns: REMOTE (remote.storage.enable), LOG_START (the first offset readers can fetch),
    REMOTE_RANGE and LOCAL_RANGE as START-END with END exclusive (the next offset; '-': no
    remote segment), bytes and objects in each place, COPYING (uploads in progress or left by
    a crash: 'tier clean' removes stale ones), and the tierer's lag (sealed segments not
    copied yet). Reads the manifest and the local segments only: needs no --object-store.
    """
    statuses = state.log().tier_status(topic)
    if fmt == "json":
        echo_json([asdict(s) for s in statuses])
    else:
        click.echo(status_table(statuses))


# --- check --------------------------------------------------------------------------------------


@tier.command("check", epilog=example(
    "logstore --object-store file:///srv/bucket tier check",
    "LOGSTORE_OBJECT_STORE='s3://bucket/logs?region=eu-west-1' logstore tier check --read-only",
))
@click.option("--read-only", is_flag=True,
              help="Only list the store (no test object is written and deleted).")
@click.pass_obj
def check_command(state: CliState, read_only: bool) -> None:
    """Check that the object store is reachable, readable and writable.

    Lists the store, then (unless --read-only) writes, reads back and deletes a small test
    object under _logstore_check/. Prints one 'ok:' line, or one 'error:' line saying what is
    wrong (no such bucket or directory, access denied, no credentials, unreachable endpoint)
    and exits 1.
    """
    _require_object_store(state)
    with _quiet_library_warnings():
        store = state.log().object_store
    assert store is not None
    try:
        store.check(write=not read_only)
    except LogstoreError as exc:
        raise CliError(f"object store {store.url} is not usable: "
                       f"{str(exc) or type(exc).__name__}") from exc
    click.echo(f"ok: {store.url} is reachable and {'readable' if read_only else 'writable'}")


# --- clean --------------------------------------------------------------------------------------


def _grace_option(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_duration_ms(value)
    except CliError as exc:
        raise click.BadParameter(exc.format_message()) from None


def clean_dict(report: OrphanReport) -> dict[str, Any]:
    """The JSON form of one cleaner pass."""
    return {
        "dry_run": report.dry_run,
        "stale_copies": list(report.stale_copies),
        "unfinished_deletes": list(report.unfinished_deletes),
        "orphan_objects": list(report.orphan_objects),
        "incomplete_uploads": report.incomplete_uploads,
        "errors": list(report.errors),
        "total": report.total,
    }


def clean_rows(report: OrphanReport) -> list[tuple[str, str]]:
    """(kind, object key) of everything removed (or, dry, to remove), by kind."""
    return ([("stale-copy", key) for key in report.stale_copies]
            + [("unfinished-delete", key) for key in report.unfinished_deletes]
            + [("orphan-object", key) for key in report.orphan_objects])


def clean_line(report: OrphanReport, grace: str) -> str:
    """One line of counts per kind (stderr, text format)."""
    if not report.total:
        return f"nothing to clean (no debris older than {grace})"
    verb = "would remove" if report.dry_run else "removed"
    return (f"{verb} {count(len(report.stale_copies), 'stale copy', 'stale copies')}, "
            f"{count(len(report.unfinished_deletes), 'unfinished delete')}, "
            f"{count(len(report.orphan_objects), 'orphan object')}, "
            f"{count(report.incomplete_uploads, 'incomplete upload')} "
            f"(older than {grace})")


@tier.command("clean", epilog=example(
    "logstore --object-store file:///srv/bucket tier clean --dry-run",
    "logstore tier clean --grace 6h --format json",
))
@click.option("--grace", "grace_ms", metavar="DURATION", default=DEFAULT_GRACE,
              show_default=True, callback=_grace_option,
              help="Leave anything younger alone (it may be an upload in progress); must "
                   "exceed the longest upload.")
@click.option("--dry-run", is_flag=True, help="Remove nothing; list what would be removed.")
@format_option
@click.pass_obj
def clean_command(state: CliState, grace_ms: int, dry_run: bool, fmt: str) -> None:
    """Remove what crashed tierers and deleters left in the object store.

    Stale copies (a copy recorded in the manifest but never finished), unfinished deletes,
    orphan objects (under topics/ but in no manifest row: deleted topics, abandoned uploads)
    and incomplete multipart uploads, each only once older than --grace. Readers never use
    any of them. Prints KIND OBJECT per object removed (or, with --dry-run, to remove) and a
    count per kind on stderr; exits 1 if some could not be removed.
    """
    _require_object_store(state)
    grace_text = _grace_text(grace_ms)
    result = state.log().clean_remote_orphans(grace_ms=grace_ms, dry_run=dry_run)
    rows = clean_rows(result)
    if fmt == "json":
        echo_json(clean_dict(result))
    else:
        if rows:
            click.echo(table(["KIND", "OBJECT"], rows))
        click.echo(clean_line(result, grace_text), err=True)
    for error in result.errors:
        click.echo(f"error: {one_line(error)}", err=True)
    if result.errors:
        click.get_current_context().exit(1)


def _grace_text(grace_ms: int) -> str:
    """A grace period as the shortest duration text (``1h``, ``90s``, ``1500ms``)."""
    for unit, ms in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000),
                     ("s", 1000)):
        if grace_ms and grace_ms % ms == 0:
            return f"{grace_ms // ms}{unit}"
    return f"{grace_ms}ms"
