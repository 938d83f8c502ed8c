"""The ``logstore`` command: the root group, global options and error handling.

Error policy, implemented once here for every command:

* user errors (:class:`~logstore.errors.LogstoreError`, :class:`~logstore.cli.output.CliError`):
  one ``error: <message>`` line on stderr, exit code 1;
* click usage errors (unknown option, missing argument, bad option value): one ``error:`` line
  naming the ``--help`` to read, exit code 2 as click uses;
* anything unexpected: one line plus a hint to set ``LOGSTORE_DEBUG=1``, which prints the
  traceback; exit code 1;
* stdout closed by the reader (``logstore tail t | head -1``): exit 0 quietly, since the reader
  got what it wanted;
* Ctrl-C outside ``tail -f``: ``aborted``, exit code 130 (the shell's code for SIGINT).

The :class:`~logstore.Log` is opened lazily, only by commands that need it, without the
background maintenance thread (a command is short-lived; ``logstore maintenance`` runs it
explicitly), and closed when the command ends, whatever the outcome.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from logstore.cli.acls import acls
from logstore.cli.brokers import brokers
from logstore.cli.check import check, repair
from logstore.cli.compact import compact
from logstore.cli.db import db
from logstore.cli.demo import demo
from logstore.cli.dump import dump
from logstore.cli.groups import groups
from logstore.cli.maintenance import maintenance
from logstore.cli.output import example, one_line
from logstore.cli.produce import produce
from logstore.cli.serve import serve
from logstore.cli.tail import tail
from logstore.cli.tier import tier
from logstore.cli.topics import topics
from logstore.cli.transactions import transactions
from logstore.cli.users import users

import logstore
from logstore.embedded import default_metadata_url
from logstore.errors import LogstoreError

DEBUG_ENV = "LOGSTORE_DEBUG"
_SIGINT_EXIT = 130


class CliState:
    """What the global options select; opens the :class:`~logstore.Log` on first use."""

    def __init__(self, data_dir: Path, metadata_url: str | None,
                 object_store_url: str | None = None) -> None:
        self.data_dir = data_dir
        self._metadata_url = metadata_url
        self.object_store_url = object_store_url or None
        self._log: logstore.Log | None = None

    @property
    def metadata_url(self) -> str:
        """The metadata database URL: the option, or the log's default SQLite database."""
        # Mirrors logstore.embedded.Log's default so `db upgrade` migrates what `open` would use.
        return self._metadata_url or default_metadata_url(self.data_dir)

    def log(self) -> logstore.Log:
        """The log of ``--data-dir``, opened once, without background maintenance or tiering
        (``logstore tier run`` tiers explicitly); with ``--object-store`` its reads of tiered
        offsets go to the object store."""
        if self._log is None:
            self._log = logstore.open(
                self.data_dir, metadata_url=self._metadata_url, maintenance_interval_ms=None,
                object_store_url=self.object_store_url, tier_interval_ms=None,
            )
        return self._log

    def close(self) -> None:
        """Close the log if it was opened (flushing nothing: commands flush what they send)."""
        if self._log is not None:
            log, self._log = self._log, None
            log.close()


class _StdoutClosed(Exception):
    """The reader of stdout went away (EPIPE); carried past click's own EPIPE handling."""


class LogstoreGroup(click.Group):
    """The root group: turns every outcome into the exit codes and messages described above."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _StdoutClosed() from exc

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        parent = super()

        def run() -> Any:
            # Non-standalone: click raises instead of printing, so the policy above decides.
            return parent.main(args, prog_name, complete_var, standalone_mode=False, **extra)

        if not standalone_mode:
            return run()
        sys.exit(_run_reporting_errors(run))


def _run_reporting_errors(run: Callable[[], Any]) -> int:
    """Run the command and return its exit code, printing errors as the policy says."""
    try:
        result = run()
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here for small outputs
        # In non-standalone mode click returns the code of ctx.exit(); commands return None.
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except (_StdoutClosed, BrokenPipeError):
        _silence_stdout()
        return 0
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # a bare group (`logstore topics`): its help, on stderr, as click does
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _error(f"{exc.format_message()}{hint}")
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return _SIGINT_EXIT
    except LogstoreError as exc:
        _error(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI reports any failure as an error message
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
            _error(f"unexpected {type(exc).__name__}: {exc}")
        else:
            _error(
                f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)"
            )
        return 1


def _error(message: str) -> None:
    click.echo(f"error: {one_line(message)}", err=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on the pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (tests): nothing will flush it at exit


class _NonEmpty(click.ParamType):
    """``inner``, refusing an empty or blank value: ``--data-dir ''`` would otherwise mean the
    current directory and ``--metadata-url ''`` the default database, silently. (An empty
    environment variable is unset for click, so ``LOGSTORE_DATA_DIR=`` still means the
    default.)"""

    def __init__(self, inner: click.ParamType) -> None:
        self.inner = inner
        self.name = inner.name  # the metavar (DIRECTORY, TEXT) is derived from it

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[Any]:
        return self.inner.shell_complete(ctx, param, incomplete)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip() and param is not None:
            # A UsageError, not BadParameter: click would add "(env var: ...)" to the message
            # even when the value came from the command line.
            source = ctx.get_parameter_source(param.name) if ctx and param.name else None
            if source is ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
                message = f"{param.envvar} is blank (unset it for the default)"
            elif isinstance(self.inner, click.Path):
                message = f"{param.opts[0]} must not be empty (use '.' for the current directory)"
            else:
                message = f"{param.opts[0]} must not be empty"
            raise click.UsageError(message, ctx)
        return self.inner.convert(value, param, ctx)


@click.group(
    name="logstore",
    cls=LogstoreGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=example(
        "logstore topics create orders --partitions 3",
        "printf 'hello\\nworld\\n' | logstore produce orders",
        "logstore tail orders --from-beginning",
    ),
)
@click.option(
    "--data-dir", type=_NonEmpty(click.Path(file_okay=False, path_type=Path)),
    envvar="LOGSTORE_DATA_DIR", default=Path("logstore-data"), show_default=True,
    show_envvar=True, help="The log directory (created if missing).",
)
@click.option(
    "--metadata-url", type=_NonEmpty(click.STRING), envvar="LOGSTORE_METADATA_URL",
    default=None, show_envvar=True,
    help="SQLAlchemy URL of the metadata database  [default: SQLite in the data dir]",
)
@click.option(
    "--object-store", "object_store_url", type=_NonEmpty(click.STRING), metavar="URL",
    envvar="LOGSTORE_OBJECT_STORE", default=None, show_envvar=True,
    help="Object store of tiered topics (remote.storage.enable=true): file:///abs/dir or "
         "s3://bucket/prefix[?endpoint_url=...&region=...]. Reads of tiered offsets need it; "
         "'logstore tier run' copies segments to it.",
)
@click.version_option(logstore.__version__, prog_name="logstore")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path, metadata_url: str | None,
        object_store_url: str | None) -> None:
    """logstore: an embeddable, durable, partitioned commit log with Kafka's semantics."""
    state = CliState(data_dir, metadata_url, object_store_url)
    ctx.obj = state
    ctx.call_on_close(state.close)


for _command in (topics, groups, transactions, produce, tail, dump, demo, db, maintenance,
                 compact, tier, check, repair, serve, users, acls, brokers):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point (``logstore = logstore.cli.main:main``); exits the process."""
    cli.main(prog_name="logstore")


if __name__ == "__main__":  # python -m logstore.cli.main, e.g. from a source checkout
    main()
