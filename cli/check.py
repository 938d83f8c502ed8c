"""``logstore check`` and ``logstore repair``: find damage in the data directory, and decide.

``check`` is a thin command over :meth:`logstore.Log.check`: one line per partition (``ok``,
``DAMAGED`` or ``OFFLINE``), then one line per problem naming the file and the offsets; exit
code 1 when anything is damaged (so scripts and monitors can act), 0 otherwise. A progress bar
(only when stderr is a terminal) counts the bytes verified.

``repair`` is a thin command over :meth:`logstore.Log.repair`. Without ``--adopt`` or
``--truncate`` it prints the findings and both plans and exits 2: the operator decides. With a
choice it prints every step (``[reuses offsets]`` where offsets consumers may have seen will be
handed out again), applies them unless ``--dry-run``, and checks again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from logstore.cli import output
from logstore.cli.output import count, echo_json, example, format_option

from logstore.checkup import PartitionRepair
from logstore.log.check import NOTICE_KINDS, PartitionCheck, Problem

if TYPE_CHECKING:
    from logstore.cli.main import CliState


def _status(check: PartitionCheck) -> str:
    if check.offline:
        return "OFFLINE"
    return "DAMAGED" if check.damaged else "ok"


def _name(check: PartitionCheck) -> str:
    return check.topic if check.partition < 0 else f"{check.topic}-{check.partition}"


def _problem_line(problem: Problem) -> str:
    label = "notice" if problem.kind in NOTICE_KINDS else problem.kind.value
    return f"  {label}: {output.one_line(problem.message)}"


def check_json(check: PartitionCheck) -> dict[str, object]:
    return {
        "topic": check.topic,
        "partition": check.partition,
        "status": _status(check).lower(),
        "directory": check.directory,
        "log_start_offset": check.log_start_offset,
        "log_end_offset": check.log_end_offset,
        "log_end_checkpoint": check.checkpoint,
        "segments": len(check.listed),
        "batches_checked": check.batches_checked,
        "bytes_checked": check.bytes_checked,
        "problems": [
            {"kind": p.kind.value, "path": p.path, "message": p.message,
             "start_offset": p.start_offset, "end_offset": p.end_offset}
            for p in check.problems
        ],
    }


def _segment_bytes(data_dir: Path) -> int:
    total = 0
    for root, _, names in os.walk(data_dir / "topics"):
        for name in names:
            if name.endswith(".sqlite") and name[:1].isdigit():
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass  # deleted meanwhile
    return total


@click.command(epilog=example(
    "logstore check",
    "logstore check orders --partition 2 --format json",
))
@click.argument("topic", required=False)
@click.option("--partition", type=int, default=None, help="Only this partition of TOPIC.")
@click.option("--quick", is_flag=True,
              help="Compare lists, files and checkpoints only; skip reading every batch.")
@format_option
@click.pass_obj
def check(state: CliState, topic: str | None, partition: int | None, quick: bool,
          fmt: str) -> None:
    """Verify the data directory without changing it: every partition's files against its
    segment list, every segment's integrity and every batch's CRC, the log end against its
    checkpoint, and topic directories the metadata does not know. Exits 1 if anything is
    damaged (then see 'logstore repair')."""
    if partition is not None and topic is None:
        raise click.UsageError("--partition needs a TOPIC")
    log = state.log()
    bar: Any = None
    if output.stderr_is_tty() and not quick:
        bar = click.progressbar(length=max(_segment_bytes(state.data_dir), 1),
                                label="checking", file=sys.stderr, show_pos=False)
        bar.__enter__()
    try:
        checks = log.check(topic, partition, deep=not quick,
                           progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    damaged = [c for c in checks if c.damaged]
    if fmt == "json":
        echo_json({"partitions": [check_json(c) for c in checks], "damaged": len(damaged)})
    else:
        for found in checks:
            click.echo(f"{_name(found)}: {_status(found)}")
            for problem in found.problems:
                click.echo(_problem_line(problem))
        click.echo(f"{count(len(checks), 'partition')} checked, {len(damaged)} damaged"
                   + (" (see 'logstore repair --help')" if damaged else ""), err=True)
    if damaged:
        sys.exit(1)


def repair_json(repair: PartitionRepair) -> dict[str, object]:
    return {
        "before": check_json(repair.before),
        "steps": [{"kind": s.problem.kind.value, "description": s.description,
                   "reuses_offsets": s.reuses_offsets} for s in repair.steps],
        "applied": repair.applied,
        "after": None if repair.after is None else check_json(repair.after),
    }


@click.command(epilog=example(
    "logstore repair orders                     # the findings and both plans",
    "logstore repair orders --adopt --dry-run   # what adopting would do",
    "logstore repair orders --partition 2 --truncate",
))
@click.argument("topic")
@click.option("--partition", type=int, default=None, help="Only this partition of TOPIC.")
@click.option("--adopt", "action", flag_value="adopt", default=None,
              help="Keep every readable record and never reuse an offset; what is lost "
                   "becomes a gap.")
@click.option("--truncate", "action", flag_value="truncate",
              help="Cut at the first damage; new records reuse the offsets from there.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@format_option
@click.pass_obj
def repair(state: CliState, topic: str, partition: int | None, action: str | None,
           dry_run: bool, fmt: str) -> None:
    """Repair the damaged partitions of TOPIC, as you choose: --adopt or --truncate. Stop the
    partition's producers first. Without a choice, print the findings and both plans."""
    log = state.log()
    if action is None:
        plans = {choice: log.repair(topic, partition, action=choice, dry_run=True)
                 for choice in ("adopt", "truncate")}
        if fmt == "json":
            echo_json({choice: [repair_json(r) for r in repairs]
                       for choice, repairs in plans.items()})
        else:
            for choice, repairs in plans.items():
                click.echo(f"with --{choice}:")
                _print_plan(repairs)
        if not any(r.steps for repairs in plans.values() for r in repairs):
            click.echo(f"nothing to repair in {topic}", err=True)
            return
        raise click.UsageError("choose --adopt or --truncate (add --dry-run to preview)")
    repairs = log.repair(topic, partition, action=action, dry_run=dry_run)
    if fmt == "json":
        echo_json([repair_json(r) for r in repairs])
    else:
        _print_plan(repairs)
    still = [r for r in repairs if r.after is not None and r.after.damaged]
    if not any(r.steps for r in repairs):
        click.echo(f"nothing to repair in {topic}", err=True)
    elif dry_run:
        click.echo("dry run: nothing was changed", err=True)
    elif still:
        click.echo(f"{count(len(still), 'partition')} still damaged: see 'logstore check "
                   f"{topic}'", err=True)
        sys.exit(1)
    else:
        click.echo(f"repaired {count(sum(1 for r in repairs if r.applied), 'partition')}",
                   err=True)


def _print_plan(repairs: list[PartitionRepair]) -> None:
    for found in repairs:
        if not found.steps:
            continue
        click.echo(f"  {_name(found.before)}:")
        for step in found.steps:
            warning = "  [reuses offsets]" if step.reuses_offsets else ""
            click.echo(f"    {output.one_line(step.description)}{warning}")
