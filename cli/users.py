"""``logstore users``: the users SASL clients of the broker authenticate as.

A user is a set of SCRAM credentials in the metadata store (salt, iterations, StoredKey,
ServerKey: never the password), one per mechanism; PLAIN logins are checked against them too.
Passwords are never taken from the command line: ``users add`` prompts on a terminal, or reads
the first line of stdin with ``--password-stdin``. These commands use the metadata store only
(not the data directory's partitions), so they work against a shared PostgreSQL store from any
host. A change applies to the next authentication; open connections stay authenticated.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
from logstore.backends import open_metadata_store
from logstore.backends.security_records import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    ScramCredential,
    ScramMechanism,
)
from logstore.cli.output import (
    CliError,
    echo_json,
    example,
    format_option,
    iso_ms,
    stdin_is_tty,
    table,
)

from logstore.errors import DuplicateResourceError, ResourceNotFoundError

if TYPE_CHECKING:
    from logstore.backends.metadata import MetadataStore
    from logstore.cli.main import CliState

MECHANISMS = tuple(m.value for m in ScramMechanism)


@contextmanager
def metadata_store(state: CliState) -> Iterator[MetadataStore]:
    """The metadata store of the global options (its SQLite folder created if missing)."""
    if state.metadata_url.startswith("sqlite:///"):
        state.data_dir.mkdir(parents=True, exist_ok=True)  # SQLite creates files, not folders
    store = open_metadata_store(state.metadata_url)
    try:
        yield store
    finally:
        store.close()


@click.group(epilog=example("logstore users add alice",
                            "logstore users list",
                            "logstore users delete alice"))
def users() -> None:
    """Manage the users SASL clients authenticate as (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("no password on stdin (the first line is the password)")
        return password
    if not stdin_is_tty():
        raise CliError("no terminal to prompt for the password: pipe it in with "
                       "--password-stdin")
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True,
                            err=True)
    if not password:
        raise CliError("the password must not be empty")
    return str(password)


@users.command(epilog=example(
    "logstore users add alice                       # prompts for the password",
    "printf '%s\\n' \"$PASSWORD\" | logstore users add alice --password-stdin",
    "logstore users add alice --mechanism SCRAM-SHA-512 --update",
))
@click.argument("name")
@click.option("--mechanism", "mechanisms", multiple=True, type=click.Choice(MECHANISMS),
              help="Store a credential for this mechanism (repeatable; default: both). PLAIN "
                   "logins work with either.")
@click.option("--iterations", type=click.IntRange(MIN_ITERATIONS, MAX_ITERATIONS),
              default=DEFAULT_ITERATIONS, show_default=True,
              help="SCRAM iterations (clients derive the key with this many on every login).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin instead of prompting.")
@click.option("--update", is_flag=True,
              help="Change an existing user's password (all its credentials are replaced).")
@click.pass_obj
def add(state: CliState, name: str, mechanisms: tuple[str, ...], iterations: int,
        password_stdin: bool, update: bool) -> None:
    """Add the user NAME (or, with --update, change its password). Clients then log in as
    NAME with SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; their principal is User:NAME."""
    # Imported here: the broker package loads the protocol codec, which a CLI start must not.
    from logstore.broker.auth.scram import make_credential

    chosen = [ScramMechanism(m) for m in dict.fromkeys(mechanisms or MECHANISMS)]
    password = _read_password(password_stdin)
    now_ms = int(time.time() * 1000)
    credentials = [make_credential(name, password, mechanism, iterations=iterations,
                                   created_ms=now_ms) for mechanism in chosen]
    with metadata_store(state) as store:
        if update and not store.list_scram_credentials(name):
            raise ResourceNotFoundError(f"user {name!r} does not exist (add it without "
                                        "--update)")
        try:
            store.put_scram_credentials(name, credentials, replace=update)
        except DuplicateResourceError:
            raise CliError(f"user {name!r} already exists (--update changes its "
                           "password)") from None
    what = "updated" if update else "added"
    click.echo(f"user {name} {what} ({', '.join(m.value for m in chosen)})")


def _grouped(credentials: list[ScramCredential]) -> dict[str, list[ScramCredential]]:
    by_user: dict[str, list[ScramCredential]] = {}
    for credential in credentials:
        by_user.setdefault(credential.user, []).append(credential)
    return by_user


@users.command(name="list", epilog=example("logstore users list",
                                           "logstore users list --format json"))
@format_option
@click.pass_obj
def list_(state: CliState, fmt: str) -> None:
    """List the users with their SCRAM mechanisms and iterations (never keys or salts)."""
    with metadata_store(state) as store:
        by_user = _grouped(store.list_scram_credentials())
    if fmt == "json":
        echo_json([{"user": user,
                    "mechanisms": [{"mechanism": c.mechanism.value, "iterations": c.iterations}
                                   for c in found],
                    "created_ms": max(c.created_ms for c in found)}
                   for user, found in by_user.items()])
        return
    click.echo(table(["USER", "MECHANISMS", "ITERATIONS", "CREATED"], [
        (user, ",".join(c.mechanism.value for c in found),
         ",".join(str(c.iterations) for c in found),
         iso_ms(max(c.created_ms for c in found)))
        for user, found in by_user.items()]))


@users.command(epilog=example("logstore users delete alice"))
@click.argument("name")
@click.pass_obj
def delete(state: CliState, name: str) -> None:
    """Delete the user NAME: it can no longer log in (connections already authenticated stay
    open until they close). Its ACLs stay: 'logstore acls delete --principal User:NAME'."""
    with metadata_store(state) as store:
        deleted = store.delete_scram_credentials(name)
    if not deleted:
        raise ResourceNotFoundError(f"user {name!r} does not exist")
    click.echo(f"user {name} deleted")
