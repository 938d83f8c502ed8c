"""``logstore topics``: create, list, describe, alter and delete topics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import click
from logstore.cli.output import (
    CliError,
    dash,
    echo_json,
    example,
    format_option,
    one_line,
    parse_config,
    stdin_is_tty,
    table,
)
from logstore.compaction.job import due_reasons

from logstore.types import PartitionDescription, TopicDescription

if TYPE_CHECKING:
    from logstore.cli.main import CliState


def description_json(
    description: TopicDescription, cleaner_due: Mapping[int, str | None] | None = None
) -> dict[str, object]:
    """``topics describe --format json``: identity, per-partition facts, effective configs;
    ``cleaner_due``: why the log cleaner would clean each partition now (None: not due)."""
    return {
        "name": description.name,
        "topic_id": description.topic_id,
        "partition_count": description.partition_count,
        "created_ms": description.created_ms,
        "partitions": [
            {
                "partition": p.partition,
                "log_start_offset": p.log_start_offset,
                "log_end_offset": p.log_end_offset,
                "high_watermark": p.high_watermark,
                "last_stable_offset": p.last_stable_offset,
                "size_bytes": p.size_bytes,
                "segment_count": p.segment_count,
                "dirty_ratio": p.dirty_ratio,
                "cleaner_checkpoint": p.cleaner_checkpoint,
                "cleaner_due": (cleaner_due or {}).get(p.partition),
            }
            for p in description.partitions
        ],
        "config": dict(description.config),
    }


def status(p: PartitionDescription) -> str:
    """OFFLINE, the missing offset ranges (``MISSING 233-456``), or ``ok``."""
    if p.offline_reason is not None:
        return "OFFLINE"
    if p.missing_ranges:
        return "MISSING " + ",".join(f"{start}-{end - 1}" for start, end in p.missing_ranges)
    return "ok"


def ratio(value: float | None) -> str:
    """A dirty ratio as a table cell: two decimals (``-`` if there is none)."""
    return "-" if value is None else f"{value:.2f}"


@click.group(epilog=example("logstore topics create orders --partitions 3",
                            "logstore topics list --format json"))
def topics() -> None:
    """Create, list, describe, alter and delete topics."""


@topics.command(epilog=example(
    "logstore topics create orders --partitions 3 --config retention.ms=86400000"))
@click.argument("name")
@click.option("--partitions", type=int, default=1, show_default=True,
              help="Number of partitions.")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
              help="Topic config override (repeatable), e.g. retention.ms=86400000.")
@click.pass_obj
def create(state: CliState, name: str, partitions: int, configs: tuple[str, ...]) -> None:
    """Create topic NAME."""
    description = state.log().create_topic(name, partitions, parse_config(configs))
    click.echo(f"created topic {description.name} with {description.partition_count} "
               f"partition{'s' if description.partition_count != 1 else ''}")


@topics.command(name="list", epilog=example("logstore topics list",
                                            "logstore topics list --format json"))
@format_option
@click.pass_obj
def list_(state: CliState, fmt: str) -> None:
    """List topic names (with --format json: partitions and config overrides too)."""
    log = state.log()
    names = log.list_topics()
    if fmt == "text":
        for name in names:
            click.echo(name)
        return
    described = [log.describe_topic(name) for name in names]
    echo_json([
        {"name": d.name, "partitions": d.partition_count, "config": dict(d.overrides)}
        for d in described
    ])


@topics.command(epilog=example("logstore topics describe orders"))
@click.argument("name")
@format_option
@click.pass_obj
def describe(state: CliState, name: str, fmt: str) -> None:
    """Show each partition's offsets and size, then the topic's effective configs.

    For a compacted topic (cleanup.policy contains compact) also each partition's dirty ratio
    (the share of its cleanable bytes not cleaned yet; `logstore compact` cleans a partition
    once it reaches min.cleanable.dirty.ratio) and its cleaner checkpoint (offsets below it
    are compacted; - if never cleaned), and why `logstore compact` would clean it now
    (CLEANER_DUE: dirty-ratio, max-compaction-lag, delete-horizon; - if not due). In JSON they
    are null for other topics.
    """
    log = state.log()
    description = log.describe_topic(name)
    compacted = any(p.dirty_ratio is not None for p in description.partitions)
    due = {partition: None if reason is None else reason.value
           for partition, reason in due_reasons(log, name).items()} if compacted else {}
    if fmt == "json":
        echo_json(description_json(description, due))
        return
    click.echo(f"topic: {description.name}  id: {description.topic_id}  "
               f"partitions: {description.partition_count}")
    headers = ["PARTITION", "LOG_START_OFFSET", "LOG_END_OFFSET", "HIGH_WATERMARK",
               "LAST_STABLE_OFFSET", "BYTES", "SEGMENTS"]
    rows: list[tuple[object, ...]] = [
        (p.partition, p.log_start_offset, p.log_end_offset, p.high_watermark,
         p.last_stable_offset, p.size_bytes, p.segment_count) for p in description.partitions
    ]
    if compacted:
        headers += ["DIRTY_RATIO", "CLEANER_CHECKPOINT", "CLEANER_DUE"]
        rows = [(*row, ratio(p.dirty_ratio), dash(p.cleaner_checkpoint),
                 dash(due.get(p.partition)))
                for row, p in zip(rows, description.partitions, strict=True)]
    damaged = [p for p in description.partitions if p.missing_ranges or p.offline_reason]
    if damaged:
        headers += ["STATUS"]
        rows = [(*row, status(p)) for row, p in zip(rows, description.partitions, strict=True)]
    click.echo(table(headers, rows))
    for p in damaged:
        if p.offline_reason is not None:
            click.echo(f"partition {p.partition}: {one_line(p.offline_reason)}")
    click.echo("configs:")
    for key, value in description.config.items():
        click.echo(f"  {key}={value}")


@topics.command(epilog=example(
    "logstore topics alter orders --config retention.ms=3600000 --delete-config segment.bytes",
    "logstore topics alter orders --partitions 6"))
@click.argument("name")
@click.option("--config", "configs", multiple=True, metavar="KEY=VALUE",
              help="Set a config (repeatable).")
@click.option("--delete-config", "deleted", multiple=True, metavar="KEY",
              help="Remove an override, back to the default (repeatable).")
@click.option("--partitions", type=int, default=None,
              help="Grow the topic to this many partitions (never shrinks).")
@click.pass_obj
def alter(state: CliState, name: str, configs: tuple[str, ...], deleted: tuple[str, ...],
          partitions: int | None) -> None:
    """Change configs and/or grow the partition count of topic NAME.

    Configs change first, then partitions: if growing fails, the config change stays.
    """
    changes: dict[str, str | None] = dict(parse_config(configs))
    if not changes and not deleted and partitions is None:
        raise click.UsageError("nothing to alter: give --config, --delete-config or --partitions")
    for key in deleted:
        if key in changes:
            raise CliError(f"config {key!r} is both set and deleted")
        changes[key] = None
    log = state.log()
    if changes:
        log.alter_topic_config(name, changes)
    if partitions is not None:
        log.create_partitions(name, partitions)
    click.echo(f"altered topic {name}")


@topics.command(epilog=example("logstore topics delete orders --yes"))
@click.argument("name")
@click.option("-y", "--yes", is_flag=True,
              help="Do not ask for confirmation (never asked when stdin is not a terminal).")
@click.pass_obj
def delete(state: CliState, name: str, yes: bool) -> None:
    """Delete topic NAME and all its records."""
    if not yes and stdin_is_tty() and not click.confirm(
        f"Delete topic {name} and all its records?", err=True
    ):
        raise CliError(f"aborted: topic {name} was not deleted")
    state.log().delete_topic(name)
    click.echo(f"deleted topic {name}")
