"""``logstore maintenance``: enforce retention now."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from logstore.cli.output import echo_json, example, format_option, table

if TYPE_CHECKING:
    from logstore.cli.main import CliState


@click.command(epilog=example("logstore maintenance --topic orders --format json"))
@click.option("--topic", default=None, help="Only this topic (default: every topic).")
@format_option
@click.pass_obj
def maintenance(state: CliState, topic: str | None, fmt: str) -> None:
    """Run one retention pass: delete sealed segments past retention.ms / retention.bytes.

    Prints, per partition, the segments and bytes deleted and the new log start offset.
    """
    reports = state.log().run_maintenance(topic)
    if fmt == "json":
        echo_json([
            {"topic": r.topic, "partition": r.partition, "segments_deleted": r.segments_deleted,
             "bytes_deleted": r.bytes_deleted, "log_start_offset": r.log_start_offset}
            for r in reports
        ])
        return
    click.echo(table(
        ["TOPIC", "PARTITION", "SEGMENTS_DELETED", "BYTES_DELETED", "LOG_START_OFFSET"],
        [(r.topic, r.partition, r.segments_deleted, r.bytes_deleted, r.log_start_offset)
         for r in reports],
    ))
