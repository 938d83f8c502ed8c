"""``logstore serve``: a Kafka-protocol broker over the data directory (see ``logstore.broker``).

A thin command: it opens the log (with its background maintenance, transaction checks and,
with ``--object-store``, tiering, as a long-running process should), builds a
:class:`~logstore.broker.Broker` and runs it on the main thread until SIGTERM or SIGINT, which
stop it cleanly (exit 0). Logging goes to stderr, one line per event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click
from logstore.cli.output import CliError, example

import logstore

if TYPE_CHECKING:
    from logstore.cli.main import CliState


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint=option)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


@click.command(epilog=example(
    "logstore serve                                # 127.0.0.1:9092",
    "logstore serve --listen 0.0.0.0:9092 --advertised-listener kafka1.example.com:9092",
    "kcat -b 127.0.0.1:9092 -L                     # from another terminal",
))
@click.option("--listen", default="127.0.0.1:9092", show_default=True, metavar="HOST:PORT",
              help="Where to accept Kafka clients (port 0: any free port).")
@click.option("--advertised-listener", default=None, metavar="HOST:PORT",
              help="The address clients are told to connect to (default: --listen).")
@click.option("--broker-id", type=click.IntRange(0), default=0, show_default=True,
              help="This broker's node id.")
@click.option("--num-partitions", type=click.IntRange(1), default=1, show_default=True,
              help="Partitions of topics created automatically.")
@click.option("--auto-create-topics/--no-auto-create-topics", default=True, show_default=True,
              help="Create topics that clients ask for (auto.create.topics.enable).")
@click.option("--max-connections", type=click.IntRange(1), default=10_000, show_default=True)
@click.pass_obj
def serve(state: CliState, listen: str, advertised_listener: str | None, broker_id: int,
          num_partitions: int, auto_create_topics: bool, max_connections: int) -> None:
    """Serve the data directory to Kafka clients (confluent-kafka, kafka-python, aiokafka,
    kcat, Java...) until SIGTERM or SIGINT, then stop cleanly. Embedded processes may use the
    same directory at the same time."""
    from logstore.broker import Broker, BrokerConfig

    host, port = parse_address(listen, "--listen")
    advertised = (parse_address(advertised_listener, "--advertised-listener")
                  if advertised_listener else (None, None))
    config = BrokerConfig(listen_host=host, listen_port=port, advertised_host=advertised[0],
                          advertised_port=advertised[1], broker_id=broker_id,
                          num_partitions=num_partitions, auto_create_topics=auto_create_topics,
                          max_connections=max_connections)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    log = logstore.open(state.data_dir, metadata_url=state.metadata_url,
                        object_store_url=state.object_store_url)
    try:
        broker = Broker(log, config=config)
        broker.run(handle_signals=True)
    except OSError as exc:
        raise CliError(str(exc)) from exc
    finally:
        log.close()
