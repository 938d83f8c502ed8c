"""``logstore groups``: list, describe, reset the offsets of and delete consumer groups.

Modelled on ``kafka-consumer-groups``. Each command is one library call (reset-offsets: plan,
then apply); the library enforces the rules, e.g. offsets change and groups are deleted only
while the group has no live members (GroupNotEmptyError), which the root group prints as one
``error:`` line with exit code 1.

Text tables use the ``topics describe`` style: upper-case headers with underscores, two spaces
between columns, ``-`` for a missing value, so ``awk`` can split them on whitespace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from logstore.cli.output import (
    CliError,
    dash,
    echo_json,
    example,
    format_option,
    parse_iso_time,
    stdin_is_tty,
    table,
)

from logstore.errors import GroupIdNotFoundError
from logstore.types import GroupDescription, PartitionLag, TopicPartition

if TYPE_CHECKING:
    from logstore.cli.main import CliState

STATE_HEADERS = ["GROUP", "STATE", "GENERATION", "PROTOCOL", "LEADER", "MEMBERS"]
OFFSET_HEADERS = ["TOPIC", "PARTITION", "CURRENT_OFFSET", "LOG_END_OFFSET", "LAG", "CONSUMER_ID",
                  "CLIENT_ID"]
MEMBER_HEADERS = ["MEMBER_ID", "CLIENT_ID", "INSTANCE_ID", "ASSIGNMENT"]
RESET_HEADERS = ["TOPIC", "PARTITION", "CURRENT_OFFSET", "NEW_OFFSET"]


@click.group(epilog=example("logstore groups list",
                            "logstore groups describe billing",
                            "logstore groups reset-offsets billing --topic orders --to-earliest"))
def groups() -> None:
    """List, describe, reset the offsets of and delete consumer groups."""


# --- list --------------------------------------------------------------------------------------


@groups.command(name="list", epilog=example("logstore groups list",
                                            "logstore groups list --format json"))
@format_option
@click.pass_obj
def list_(state: CliState, fmt: str) -> None:
    """List consumer groups with their state and number of live members."""
    listings = sorted(state.log().list_groups(), key=lambda g: g.group_id)
    if fmt == "json":
        echo_json([{"group_id": g.group_id, "state": g.state, "protocol_type": g.protocol_type,
                    "member_count": g.member_count} for g in listings])
        return
    click.echo(table(["GROUP", "STATE", "MEMBERS"],
                     [(g.group_id, g.state, g.member_count) for g in listings]))


# --- describe ----------------------------------------------------------------------------------


def _assignment_text(partitions: frozenset[TopicPartition]) -> str:
    return ",".join(str(tp) for tp in sorted(partitions)) or "-"


def describe_json(description: GroupDescription, lags: list[PartitionLag]) -> dict[str, object]:
    """``groups describe --format json``: the group, its members and per-partition offsets."""
    clients = {m.member_id: m.client_id for m in description.members}
    return {
        "group_id": description.group_id,
        "state": description.state,
        "generation": description.generation,
        "protocol_type": description.protocol_type,
        "protocol": description.protocol,
        "leader_id": description.leader_id,
        "members": [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "group_instance_id": m.group_instance_id,
                "assignment": [{"topic": tp.topic, "partition": tp.partition}
                               for tp in sorted(m.assignment)],
            }
            for m in description.members
        ],
        "offsets": [
            {
                "topic": lag.topic,
                "partition": lag.partition,
                "committed_offset": lag.committed_offset,
                "log_end_offset": lag.log_end_offset,
                "lag": lag.lag,
                "member_id": lag.member_id,
                "client_id": clients.get(lag.member_id) if lag.member_id else None,
            }
            for lag in lags
        ],
    }


@groups.command(epilog=example(
    "logstore groups describe billing",
    "logstore groups describe billing --offsets | awk 'NR > 1 && $5 > 1000'",
    "logstore groups describe billing --format json"))
@click.argument("group")
@click.option("--state", "only_state", is_flag=True,
              help="Text: only the state table (state, generation, protocol, leader).")
@click.option("--offsets", "only_offsets", is_flag=True,
              help="Text: only the per-partition offsets table.")
@click.option("--members", "only_members", is_flag=True,
              help="Text: only the members table (with their assignments).")
@format_option
@click.pass_obj
def describe(state: CliState, group: str, only_state: bool, only_offsets: bool,
             only_members: bool, fmt: str) -> None:
    """Show consumer group GROUP, like kafka-consumer-groups --describe.

    Text output is up to three tables, separated by blank lines: the group's state; one row
    per partition with the committed offset (CURRENT_OFFSET), the log end offset, the lag and
    the member that owns it; then each live member with its assigned partitions. --state,
    --offsets or --members prints just that table (header line first), for pipes. A missing
    value prints as "-" (e.g. a partition that is assigned but has no committed offset yet).
    """
    chosen = [name for name, flag in (("--state", only_state), ("--offsets", only_offsets),
                                      ("--members", only_members)) if flag]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} cannot be combined: choose one table")
    if chosen and fmt == "json":
        raise click.UsageError(f"{chosen[0]} selects a text table; --format json prints the "
                               "whole group")
    log = state.log()
    description = log.describe_group(group)
    lags = log.group_lag(group)
    if fmt == "json":
        echo_json(describe_json(description, lags))
        return
    clients = {m.member_id: m.client_id for m in description.members}
    tables = []
    if not chosen or only_state:
        tables.append(table(STATE_HEADERS, [(
            description.group_id, description.state, description.generation,
            dash(description.protocol), dash(description.leader_id), len(description.members),
        )]))
    if not chosen or only_offsets:
        tables.append(table(OFFSET_HEADERS, [(
            lag.topic, lag.partition, dash(lag.committed_offset), lag.log_end_offset,
            dash(lag.lag), dash(lag.member_id), dash(clients.get(lag.member_id or "")),
        ) for lag in lags]))
    if not chosen or only_members:
        tables.append(table(MEMBER_HEADERS, [(
            m.member_id, m.client_id, dash(m.group_instance_id), _assignment_text(m.assignment),
        ) for m in sorted(description.members, key=lambda m: m.member_id)]))
    click.echo("\n\n".join(tables))


# --- reset-offsets -----------------------------------------------------------------------------


def reset_mode(to_earliest: bool, to_latest: bool, to_offset: int | None,
               to_datetime: str | None, shift_by: int | None) -> tuple[str, int]:
    """The library's (mode, value) for the one reset option given (a usage error otherwise)."""
    given = [(name, mode, value) for name, mode, value in (
        ("--to-earliest", "earliest", 0 if to_earliest else None),
        ("--to-latest", "latest", 0 if to_latest else None),
        ("--to-offset", "offset", to_offset),
        ("--to-datetime", "datetime", to_datetime),
        ("--shift-by", "shift", shift_by),
    ) if value is not None]
    if len(given) != 1:
        if given:
            what = " and ".join(name for name, _, _ in given) + " cannot be combined"
        else:
            what = "missing the reset target"
        raise click.UsageError(f"{what}: give exactly one of --to-earliest, --to-latest, "
                               "--to-offset, --to-datetime, --shift-by")
    name, mode, value = given[0]
    if mode == "datetime":
        return mode, parse_iso_time(str(value), name)
    return mode, int(value or 0)


def _committed(state: CliState, group: str) -> dict[TopicPartition, int | None]:
    """The group's committed offsets (none for a group that does not exist yet)."""
    return {tp: o.offset for tp, o in state.log().committed_offsets(group).items()}


def _live_members(state: CliState, group: str) -> int:
    try:
        return len(state.log().describe_group(group).members)
    except GroupIdNotFoundError:
        return 0


@groups.command(name="reset-offsets", epilog=example(
    "logstore groups reset-offsets billing --topic orders --to-earliest",
    "logstore groups reset-offsets billing --topic orders --partition 0 --shift-by -100 --dry-run",
    "logstore groups reset-offsets billing --topic orders --to-datetime 2024-05-01T12:00:00Z"))
@click.argument("group")
@click.option("--topic", required=True, help="The topic whose committed offsets to reset.")
@click.option("--partition", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Only this partition (repeatable)  [default: every partition]")
@click.option("--to-earliest", is_flag=True, help="To each partition's log start offset.")
@click.option("--to-latest", is_flag=True, help="To each partition's log end offset.")
@click.option("--to-offset", type=click.IntRange(min=0), default=None, metavar="N",
              help="To offset N (clamped to the partition's offsets, with a warning).")
@click.option("--to-datetime", metavar="TIME", default=None,
              help="To the first record at or after TIME, ISO-8601 (local time unless it has "
                   "an offset or Z); the log end if there is none.")
@click.option("--shift-by", type=int, default=None, metavar="N",
              help="Move the committed offset by N (negative: back); from the log start where "
                   "nothing is committed.")
@click.option("--dry-run", is_flag=True, help="Print the plan without changing anything.")
@format_option
@click.pass_obj
def reset_offsets(state: CliState, group: str, topic: str, partitions: tuple[int, ...],
                  to_earliest: bool, to_latest: bool, to_offset: int | None,
                  to_datetime: str | None, shift_by: int | None, dry_run: bool,
                  fmt: str) -> None:
    """Set the committed offsets of GROUP on TOPIC, like kafka-consumer-groups --reset-offsets.

    Give exactly one target. New offsets are clamped to each partition's [log start, log end].
    The plan is applied at once unless --dry-run (Kafka's tool needs --execute instead); it
    is refused while the group has live members, since they would overwrite it with their
    next commit: stop them first. A group that does not exist yet is created with these
    offsets, as in Kafka. Prints each partition's current committed offset and new offset
    ("-": nothing committed); the summary goes to stderr.
    """
    mode, value = reset_mode(to_earliest, to_latest, to_offset, to_datetime, shift_by)
    log = state.log()
    chosen = sorted(set(partitions)) or None
    plan = log.plan_group_offset_reset(group, topic, mode=mode, value=value, partitions=chosen)
    current = _committed(state, group)
    if not dry_run:
        log.alter_group_offsets(group, plan)
    if mode == "offset":
        for tp, offset in sorted(plan.items()):
            if offset != value:
                click.echo(f"warning: offset {value} is out of range for {tp}: using {offset}",
                           err=True)
    rows = sorted(plan.items())
    if fmt == "json":
        echo_json({
            "group_id": group,
            "dry_run": dry_run,
            "offsets": [{"topic": tp.topic, "partition": tp.partition,
                         "current_offset": current.get(tp), "new_offset": offset}
                        for tp, offset in rows],
        })
    else:
        click.echo(table(RESET_HEADERS, [(tp.topic, tp.partition, dash(current.get(tp)), offset)
                                         for tp, offset in rows]))
    count = f"{len(rows)} partition{'s' if len(rows) != 1 else ''}"
    if not dry_run:
        click.echo(f"reset the offsets of group {group} on {count} of {topic}", err=True)
        return
    click.echo(f"dry run: the offsets of group {group} were not changed", err=True)
    members = _live_members(state, group)
    if members:
        click.echo(f"note: group {group} has {members} live member(s): the reset will be refused "
                   "until they stop", err=True)


# --- delete ------------------------------------------------------------------------------------


@groups.command(epilog=example("logstore groups delete billing --yes"))
@click.argument("group")
@click.option("-y", "--yes", is_flag=True,
              help="Do not ask for confirmation (never asked when stdin is not a terminal).")
@click.pass_obj
def delete(state: CliState, group: str, yes: bool) -> None:
    """Delete consumer group GROUP and its committed offsets (refused while it has live
    members)."""
    if not yes and stdin_is_tty() and not click.confirm(
        f"Delete group {group} and its committed offsets?", err=True
    ):
        raise CliError(f"aborted: group {group} was not deleted")
    state.log().delete_group(group)
    click.echo(f"deleted group {group}")
