"""``logstore serve``: a Kafka-protocol broker over the data directory (see ``logstore.broker``).

A thin command: it opens the log (with its background maintenance, transaction checks and,
with ``--object-store``, tiering, as a long-running process should), builds a
:class:`~logstore.broker.Broker` and runs it on the main thread until SIGTERM or SIGINT, which
stop it cleanly (exit 0). Logging goes to stderr, one line per event.

Security options (``--security-protocol``, ``--tls-*``, ``--sasl-mechanism``, ``--super-user``,
``--allow-everyone-if-no-acl-found``) map one to one to :class:`~logstore.broker.BrokerConfig`
fields; a TLS key's password is read from a file, never given on the command line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from logstore.cli.output import CliError, example

import logstore
from logstore.errors import InvalidArgumentError

if TYPE_CHECKING:
    from logstore.cli.main import CliState

F = TypeVar("F", bound=Callable[..., Any])
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
#: BrokerConfig field -> the option that sets it (for error messages).
_OPTIONS = {"security_protocol": "--security-protocol", "tls_cert_path": "--tls-cert",
            "tls_key_path": "--tls-key", "tls_client_ca_path": "--tls-client-ca",
            "tls_client_auth": "--tls-client-auth", "sasl_mechanisms": "--sasl-mechanism",
            "super_users": "--super-user"}


def parse_address(text: str, option: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint=option)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def security_options(f: F) -> F:
    """The listener's security options, passed to the command as ``security`` keywords."""
    file = click.Path(exists=True, dir_okay=False)
    for option in reversed([
        click.option("--security-protocol", type=click.Choice(SECURITY_PROTOCOLS),
                     default="PLAINTEXT", show_default=True,
                     help="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS)."),
        click.option("--tls-cert", type=file, default=None, metavar="PEM",
                     help="The server's certificate chain (SSL, SASL_SSL)."),
        click.option("--tls-key", type=file, default=None, metavar="PEM",
                     help="The certificate's private key."),
        click.option("--tls-key-password-file", type=file, default=None, metavar="FILE",
                     help="A file whose first line is the key's password (encrypted keys)."),
        click.option("--tls-client-ca", type=file, default=None, metavar="PEM",
                     help="CA certificates of client certificates (ssl.truststore)."),
        click.option("--tls-client-auth", type=click.Choice(["none", "requested", "required"]),
                     default="none", show_default=True,
                     help="Client certificates (ssl.client.auth); the principal is then "
                          "User:<subject DN>."),
        click.option("--sasl-mechanism", "sasl_mechanisms", multiple=True,
                     type=click.Choice(SASL_MECHANISMS),
                     help="Enabled SASL mechanisms (repeatable; default: all three)."),
        click.option("--super-user", "super_users", multiple=True, metavar="PRINCIPAL",
                     help="A principal every ACL allows, e.g. User:admin (repeatable)."),
        click.option("--allow-everyone-if-no-acl-found", is_flag=True, default=False,
                     help="Once ACLs exist, still allow resources no ACL names."),
    ]):
        f = option(f)
    return f


def security_config(options: dict[str, Any]) -> dict[str, Any]:
    """The BrokerConfig fields of :func:`security_options`' values."""
    password = None
    if options["tls_key_password_file"]:
        text = Path(options["tls_key_password_file"]).read_text(encoding="utf-8")
        password = (text.splitlines() or [""])[0]
    config: dict[str, Any] = {
        "security_protocol": options["security_protocol"].upper(),
        "tls_cert_path": options["tls_cert"], "tls_key_path": options["tls_key"],
        "tls_key_password": password, "tls_client_ca_path": options["tls_client_ca"],
        "tls_client_auth": options["tls_client_auth"],
        "super_users": tuple(options["super_users"]),
        "allow_everyone_if_no_acl_found": options["allow_everyone_if_no_acl_found"]}
    if options["sasl_mechanisms"]:
        config["sasl_mechanisms"] = tuple(dict.fromkeys(
            m.upper() for m in options["sasl_mechanisms"]))
    return config


def _option_names(message: str) -> str:
    for field_name, option in _OPTIONS.items():
        message = message.replace(field_name, option)
    return message


@click.command(epilog=example(
    "logstore serve                                # 127.0.0.1:9092",
    "logstore serve --listen 0.0.0.0:9092 --advertised-listener kafka1.example.com:9092",
    "kcat -b 127.0.0.1:9092 -L                     # from another terminal",
    "logstore serve --metrics-listen 127.0.0.1:9404  # Prometheus: /metrics",
    "logstore serve --security-protocol SASL_SSL --tls-cert broker.pem --tls-key broker.key",
))
@click.option("--listen", default="127.0.0.1:9092", show_default=True, metavar="HOST:PORT",
              help="Where to accept Kafka clients (port 0: any free port).")
@click.option("--advertised-listener", default=None, metavar="HOST:PORT",
              help="The address clients are told to connect to (default: --listen).")
@click.option("--broker-id", type=click.IntRange(0), default=0, show_default=True,
              help="This broker's node id (registered in the metadata store: "
                   "'logstore brokers list').")
@click.option("--rack", default=None, help="This broker's rack (broker.rack).")
@click.option("--broker-session-timeout-ms", type=click.IntRange(1), default=9_000,
              show_default=True,
              help="A broker that has not renewed its registration for this long is dead "
                   "(broker.session.timeout.ms, the metadata store's clock).")
@click.option("--num-partitions", type=click.IntRange(1), default=1, show_default=True,
              help="Partitions of topics created automatically.")
@click.option("--auto-create-topics/--no-auto-create-topics", default=True, show_default=True,
              help="Create topics that clients ask for (auto.create.topics.enable).")
@click.option("--max-connections", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--metrics-listen", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (default: none).")
@security_options
@click.pass_obj
def serve(state: CliState, listen: str, advertised_listener: str | None, broker_id: int,
          rack: str | None, broker_session_timeout_ms: int, num_partitions: int,
          auto_create_topics: bool, max_connections: int, metrics_listen: str | None,
          **security: Any) -> None:
    """Serve the data directory to Kafka clients (confluent-kafka, kafka-python, aiokafka,
    kcat, Java...) until SIGTERM or SIGINT, then stop cleanly. Embedded processes may use the
    same directory at the same time.

    Security: --security-protocol SSL or SASL_SSL serves TLS (--tls-cert, --tls-key; client
    certificates with --tls-client-ca and --tls-client-auth); SASL_PLAINTEXT or SASL_SSL
    require SASL authentication (PLAIN, SCRAM-SHA-256/512) of the users 'logstore users add'
    made. ACLs ('logstore acls add') apply once any exists."""
    from logstore.broker import Broker, BrokerConfig

    host, port = parse_address(listen, "--listen")
    advertised = (parse_address(advertised_listener, "--advertised-listener")
                  if advertised_listener else (None, None))
    try:
        config = BrokerConfig(listen_host=host, listen_port=port,
                              advertised_host=advertised[0], advertised_port=advertised[1],
                              broker_id=broker_id, rack=rack or None,
                              session_timeout_ms=broker_session_timeout_ms,
                              num_partitions=num_partitions,
                              auto_create_topics=auto_create_topics,
                              max_connections=max_connections,
                              metrics_listen=(parse_address(metrics_listen, "--metrics-listen")
                                              if metrics_listen else None),
                              **security_config(security))
    except InvalidArgumentError as exc:
        raise CliError(_option_names(str(exc))) from None
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
