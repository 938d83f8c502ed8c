"""``logstore brokers``: the brokers registered in the metadata store.

Each ``logstore serve`` registers its ``--broker-id``, advertised listener and rack when it
starts, renews its session every third of ``broker.session.timeout.ms`` (9 s) and ends it
when it stops cleanly (it is then listed as dead); a broker that stopped renewing (killed,
paused, cut off from the store) is listed as dead once its session lapses, by the database's
clock. The
command reads the metadata store only, so it works against a shared PostgreSQL store from any
host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from logstore.cli.output import echo_json, example, format_option, iso_ms, table
from logstore.cli.users import metadata_store

if TYPE_CHECKING:
    from logstore.cli.main import CliState


@click.group(epilog=example("logstore brokers list",
                            "logstore --metadata-url postgresql://db/logstore brokers list "
                            "--format json"))
def brokers() -> None:
    """Show the brokers registered in the metadata store."""


@brokers.command("list", epilog=example("logstore brokers list"))
@format_option
@click.pass_obj
def list_(state: CliState, fmt: str) -> None:
    """List the registered brokers: id, listener, rack, broker epoch, alive or dead, and
    until when the session lasts (the database's clock)."""
    with metadata_store(state) as store:
        registered = store.list_brokers()
    if fmt == "json":
        echo_json([{"broker_id": b.broker_id, "host": b.host, "port": b.port, "rack": b.rack,
                    "epoch": b.epoch, "alive": b.alive, "registered_ms": b.registered_ms,
                    "expires_ms": b.expires_ms} for b in registered])
        return
    click.echo(table(["ID", "LISTENER", "RACK", "EPOCH", "STATE", "SESSION UNTIL"], [
        (str(b.broker_id), f"{b.host}:{b.port}", b.rack or "-", str(b.epoch),
         "alive" if b.alive else "dead", iso_ms(b.expires_ms))
        for b in registered]))
