"""``logstore dump``: one line per stored record batch of a partition, like kafka-dump-log."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

import click
from logstore.cli.output import example, format_option, printable, to_json

from logstore.log.dump import BatchInfo, RecordInfo, iter_batches

if TYPE_CHECKING:
    from logstore.cli.main import CliState


def _flag(value: bool) -> str:
    return "true" if value else "false"


def batch_line(info: BatchInfo) -> str:
    """kafka-dump-log's batch line (same field names and order), plus the segment."""
    line = (
        f"baseOffset: {info.base_offset} lastOffset: {info.last_offset} count: {info.count} "
        f"baseSequence: {info.base_sequence} lastSequence: {info.last_sequence} "
        f"producerId: {info.producer_id} producerEpoch: {info.producer_epoch} "
        f"partitionLeaderEpoch: {info.partition_leader_epoch} "
        f"isTransactional: {_flag(info.is_transactional)} isControl: {_flag(info.is_control)} "
        f"position: {info.position} {info.timestamp_type}: {info.max_timestamp} "
        f"size: {info.size} magic: {info.magic} compresscodec: {info.compression} "
        f"crc: {info.crc} isvalid: {_flag(info.is_valid)} segment: {info.segment}"
    )
    return f"{line} error: {info.error}" if info.error else line


def record_line(record: RecordInfo, timestamp_type: str) -> str:
    """kafka-dump-log's record line; key and payload only when they are printable text."""
    line = (
        f"| offset: {record.offset} {timestamp_type}: {record.timestamp_ms} "
        f"keySize: {record.key_size} valueSize: {record.value_size} "
        f"sequence: {record.sequence} headerCount: {len(record.header_keys)} "
        f"headerKeys: [{','.join(record.header_keys)}]"
    )
    key, payload = printable(record.key), printable(record.value)
    if key is not None:
        line += f" key: {key}"
    if payload is not None:
        line += f" payload: {payload}"
    return line


def batch_json(info: BatchInfo) -> dict[str, object]:
    """``dump --format json``: one object per batch (records nested with --records)."""
    out: dict[str, object] = {
        f.name: getattr(info, f.name) for f in fields(info) if f.name != "records"
    }
    if info.records is not None:
        out["records"] = [
            {
                "offset": r.offset,
                "timestamp": r.timestamp_ms,
                "key_size": r.key_size,
                "value_size": r.value_size,
                "sequence": r.sequence,
                "header_keys": list(r.header_keys),
                "key": printable(r.key),
                "payload": printable(r.value),
            }
            for r in info.records
        ]
    return out


@click.command(epilog=example("logstore dump orders --partition 0 --records"))
@click.argument("topic")
@click.option("--partition", type=click.IntRange(min=0), required=True,
              help="The partition to dump.")
@click.option("--records", "with_records", is_flag=True,
              help="Also print each record (payloads only when printable).")
@format_option
@click.pass_obj
def dump(state: CliState, topic: str, partition: int, with_records: bool, fmt: str) -> None:
    """Print every stored batch of one partition with its header fields and CRC check.

    "position" is the batch's byte position in the partition's stream of batches from the log
    start; "segment" is the base offset of the segment holding it. A damaged batch is shown
    with "isvalid: false" and the reason; a warning on stderr counts them (exit code 0).
    """
    invalid = total = 0
    partition_log = state.log().partition_log(topic, partition)
    for info in iter_batches(partition_log, records=with_records):
        total += 1
        invalid += not info.is_valid
        if fmt == "json":
            click.echo(to_json(batch_json(info)))
            continue
        click.echo(batch_line(info))
        for record in info.records or ():
            click.echo(record_line(record, info.timestamp_type))
    if invalid:
        click.echo(f"warning: {invalid} of {total} batches of {topic}-{partition} are damaged",
                   err=True)
