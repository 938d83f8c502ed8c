"""``logstore db``: metadata database administration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from logstore.backends import migrate
from logstore.cli.output import example

if TYPE_CHECKING:
    from logstore.cli.main import CliState


@click.group(epilog=example("logstore db upgrade"))
def db() -> None:
    """Manage the metadata database (topics, configs, offsets)."""


@db.command(epilog=example(
    "logstore --metadata-url postgresql+psycopg://logstore@db/logstore db upgrade"))
@click.pass_obj
def upgrade(state: CliState) -> None:
    """Bring the metadata schema to the newest revision this logstore knows.

    Safe to run at any time and from several processes at once: migrations run under a lock,
    each exactly once. (Opening a log migrates too; this command does it ahead of time, e.g.
    before rolling out a new version.)
    """
    if state.metadata_url.startswith("sqlite:///"):
        state.data_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates files, not folders
    result = migrate.upgrade(state.metadata_url)
    before = result.from_revision or "empty"
    if result.changed:
        click.echo(f"metadata schema upgraded: {before} -> {result.to_revision}")
    else:
        click.echo(f"metadata schema already at {result.to_revision}: nothing to do")
