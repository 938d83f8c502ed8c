"""``logstore transactions``: list, describe and abort transactions (like kafka-transactions).

A transaction left open by a producer that died holds the last stable offset of every
partition it wrote to, so read_committed consumers stop there. The coordinator aborts it once
its timeout passes (the maintenance of any process with the log open); ``transactions abort``
does it at once. Each command is one library call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from logstore.cli.output import dash, echo_json, example, format_option, iso_ms, table

from logstore.types import TransactionDescription

if TYPE_CHECKING:
    from logstore.cli.main import CliState

HEADERS = ["TRANSACTIONAL_ID", "PRODUCER_ID", "EPOCH", "STATE", "TIMEOUT_MS", "STARTED",
           "PARTITIONS"]


@click.group(epilog=example("logstore transactions list",
                            "logstore transactions describe copier-1",
                            "logstore transactions abort copier-1"))
def transactions() -> None:
    """List, describe and abort transactions (hanging ones hold read_committed readers back)."""


def _json(description: TransactionDescription) -> dict[str, object]:
    return {
        "transactional_id": description.transactional_id,
        "producer_id": description.producer_id,
        "producer_epoch": description.producer_epoch,
        "state": description.state,
        "timeout_ms": description.timeout_ms,
        "start_ms": description.start_ms if description.start_ms >= 0 else None,
        "last_update_ms": description.last_update_ms,
        "partitions": [{"topic": tp.topic, "partition": tp.partition}
                       for tp in sorted(description.partitions)],
        "pending_offsets": {group: [{"topic": tp.topic, "partition": tp.partition,
                                     "offset": offset} for tp, offset in sorted(offsets.items())]
                            for group, offsets in sorted(description.pending_offsets.items())},
    }


def _row(description: TransactionDescription) -> tuple[object, ...]:
    started = iso_ms(description.start_ms) if description.start_ms >= 0 else None
    partitions = ",".join(str(tp) for tp in sorted(description.partitions)) or None
    return (description.transactional_id, description.producer_id, description.producer_epoch,
            description.state, description.timeout_ms, dash(started), dash(partitions))


@transactions.command(name="list", epilog=example("logstore transactions list",
                                                  "logstore transactions list --format json"))
@format_option
@click.pass_obj
def list_(state: CliState, fmt: str) -> None:
    """List transactional ids with their state and open transaction.

    An id with no transaction in progress that was not used for 7 days
    (transactional.id.expiration.ms) expires: opening the log removes it, so it is not listed.
    """
    found = state.log().list_transactions()
    if fmt == "json":
        echo_json([_json(d) for d in found])
        return
    click.echo(table(HEADERS, [_row(d) for d in found]))


@transactions.command(epilog=example("logstore transactions describe copier-1"))
@click.argument("transactional_id")
@format_option
@click.pass_obj
def describe(state: CliState, transactional_id: str, fmt: str) -> None:
    """Show one transactional id: producer identity, state, partitions and pending offsets."""
    description = state.log().describe_transaction(transactional_id)
    if fmt == "json":
        echo_json(_json(description))
        return
    click.echo(table(HEADERS, [_row(description)]))
    offsets = [(group, tp.topic, tp.partition, offset)
               for group, by_tp in sorted(description.pending_offsets.items())
               for tp, offset in sorted(by_tp.items())]
    if offsets:
        click.echo()
        click.echo(table(["GROUP", "TOPIC", "PARTITION", "PENDING_OFFSET"], offsets))


@transactions.command(epilog=example("logstore transactions abort copier-1"))
@click.argument("transactional_id")
@format_option
@click.pass_obj
def abort(state: CliState, transactional_id: str, fmt: str) -> None:
    """Abort the open transaction of a transactional id now (a hanging one), releasing the
    last stable offset of its partitions."""
    description = state.log().abort_transaction(transactional_id)
    if fmt == "json":
        echo_json(_json(description))
        return
    click.echo(f"transaction {transactional_id}: {description.state}")
