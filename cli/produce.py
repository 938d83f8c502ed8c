"""``logstore produce``: one record per line of stdin."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

import click
from logstore.cli.output import CliError, binary_stdin, example, parse_headers

from logstore.client.futures import RecordFuture
from logstore.errors import LogstoreError
from logstore.records.compression import Compression

if TYPE_CHECKING:
    from logstore.cli.main import CliState

    from logstore import Log


class _Deliveries:
    """Counts acknowledged records and keeps the first delivery error (callbacks arrive on the
    producer's sender threads, hence the lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acked = 0
        self.error: BaseException | None = None

    def on_done(self, future: RecordFuture) -> None:
        error = future.exception(0)
        with self._lock:
            if error is None:
                self.acked += 1
            elif self.error is None:
                self.error = error


def produce_lines(
    log: Log,
    topic: str,
    lines: IO[bytes],
    *,
    key_separator: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    partition: int | None,
    compression: str,
) -> int:
    """Send one record per line of ``lines`` and return how many were acknowledged.

    A line loses only its trailing ``\\n``; other bytes, ``\\r`` included, are kept. With a key
    separator, the bytes before its first occurrence are the key. The first bad line, refused
    record or delivery error stops the input: the records before it are flushed (and stay
    produced), nothing after it is sent, and a CliError says which line and how many records
    were produced.
    """
    deliveries = _Deliveries()
    failure: str | None = None
    number = 0
    with log.producer(compression_type=compression) as producer:
        # Fail on an unknown topic or partition before waiting for any input.
        partitions = producer.partitions_for(topic)
        if partition is not None and partition not in partitions:
            raise CliError(f"topic {topic} has {len(partitions)} partitions; partition "
                           f"{partition} does not exist")
        for number, line in enumerate(lines, 1):
            if deliveries.error is not None:
                break
            if line.endswith(b"\n"):
                line = line[:-1]
            key: bytes | None = None
            value = line
            if key_separator is not None:
                key, found, value = line.partition(key_separator)
                if not found:
                    failure = f"line {number} has no key separator {key_separator!r}"
                    break
            try:
                future = producer.send(topic, value=value, key=key, headers=headers,
                                       partition=partition)
            except LogstoreError as exc:
                failure = f"line {number}: {exc}"
                break
            future.add_done_callback(deliveries.on_done)
        producer.flush()
    if deliveries.error is not None:
        raise CliError(f"delivery to {topic} failed: {deliveries.error} "
                       f"({deliveries.acked} records were produced)")
    if failure is not None:
        raise CliError(f"{failure}; the {deliveries.acked} records before it were produced to "
                       f"{topic} and nothing after it was sent")
    return deliveries.acked


@click.command(epilog=example(
    "printf 'user-1:signed up\\nuser-2:logged in\\n' | "
    "logstore produce events --key-separator : --header source=cli"))
@click.argument("topic")
@click.option("--key-separator", metavar="SEP",
              help="Split each line at the first SEP into key and value (a line without SEP "
                   "is an error that stops the input).")
@click.option("--header", "header_items", multiple=True, metavar="KEY=VALUE",
              help="Add this header to every record (repeatable).")
@click.option("--partition", type=click.IntRange(min=0), default=None,
              help="Write every record to this partition (default: by key hash, or sticky).")
@click.option("--compression", type=click.Choice([c.codec_name for c in Compression]),
              default="none", show_default=True, help="Batch compression codec.")
@click.pass_obj
def produce(state: CliState, topic: str, key_separator: str | None,
            header_items: tuple[str, ...], partition: int | None, compression: str) -> None:
    """Produce one record per stdin line to TOPIC.

    Input is read as bytes (non-UTF-8 data passes through unchanged); only the trailing
    newline of each line is removed, so an empty line is an empty value. A summary goes to
    stderr at the end.
    """
    if key_separator == "":
        raise click.BadParameter("must not be empty", param_hint="--key-separator")
    separator = None if key_separator is None else key_separator.encode("utf-8",
                                                                       "surrogateescape")
    count = produce_lines(
        state.log(), topic, binary_stdin(), key_separator=separator,
        headers=parse_headers(header_items), partition=partition, compression=compression,
    )
    click.echo(f"produced {count} records to {topic}", err=True)
