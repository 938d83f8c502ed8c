"""Running a job command once or on a schedule (``--every``), stoppable by signals.

Shared by ``logstore compact`` and ``logstore tier run``:

* the job runs in a worker thread while the main thread waits for it; SIGINT or SIGTERM only
  set the job's stop event (:class:`~logstore.cli.signals.StopOnSignal`), so the run in
  progress ends at its next safe point and the log closes normally. The handler never touches
  a lock the main thread could hold: that thread only joins;
* a single pass stopped that way says ``aborted`` and exits with 128 + the signal number;
* ``--every`` runs the job now and then every interval until a signal, and then exits 0
  (stopping is how a scheduler ends). A failed run prints one ``error:`` line and the next
  tick tries again, except a mistake in the command line (unknown topic, invalid argument),
  which no later run would fix; a closed stdout ends the schedule quietly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import TypeVar

import click
from logstore.cli.output import one_line, parse_duration_ms
from logstore.cli.signals import StopOnSignal

from logstore.errors import InvalidArgumentError, LogstoreError, UnknownTopicOrPartitionError

R = TypeVar("R")

# How often the waiting main thread wakes up (signals are handled at once regardless).
_JOIN_POLL_S = 0.5
_SECONDS = re.compile(r"\d+(\.\d*)?|\.\d+")


def parse_interval_s(text: str) -> float:
    """``--every``: plain seconds (``90``, ``0.5``) or a duration (``30s``, ``10m``, ``1h``,
    ``1d``, ``1h30m``), in seconds; must be positive and at most ``threading.TIMEOUT_MAX``
    (about 292 years on 64-bit Linux), the longest the scheduler's wait accepts."""
    compact_text = text.strip()
    if _SECONDS.fullmatch(compact_text):
        seconds = float(compact_text)
    else:
        try:
            seconds = parse_duration_ms(compact_text) / 1000
        except click.ClickException:
            raise click.BadParameter(
                f"invalid duration {text!r}: use seconds or a number and a unit (ms, s, m, h, "
                "d, w), e.g. 30s, 10m, 1h, 1d") from None
    if seconds <= 0:
        raise click.BadParameter(f"the interval must be positive, got {text!r}")
    # Refused now rather than after the first run, where the wait between runs would fail.
    if seconds > threading.TIMEOUT_MAX:
        raise click.BadParameter(
            f"the interval must be at most {int(threading.TIMEOUT_MAX):,} s (about "
            f"{threading.TIMEOUT_MAX / 86_400:,.0f} days, the longest a thread can wait), got "
            f"{text!r}")
    return seconds


def interval_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """The click callback of ``--every``."""
    return None if value is None else parse_interval_s(value)


def run_stoppable(job: Callable[[threading.Event], None], *, name: str) -> int | None:
    """Run ``job(stop)`` in a worker thread until it returns; SIGINT/SIGTERM set ``stop``.
    Re-raises what the job raised; returns the signal that stopped it, if any."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            job(stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failure.append(exc)

    worker = threading.Thread(target=work, name=name, daemon=True)
    with StopOnSignal(stop) as stopper:
        worker.start()
        while worker.is_alive():
            worker.join(_JOIN_POLL_S)
    if failure:
        raise failure[0]
    return stopper.signum


def run_job(
    run_once: Callable[[threading.Event], R],
    report: Callable[[R], None],
    *,
    interval_s: float | None,
    name: str,
) -> None:
    """Run ``report(run_once(stop))`` once, or every ``interval_s`` seconds, as the module
    docstring says (exits 128 + signal for a stopped single pass)."""
    if interval_s is None:
        signum = run_stoppable(lambda stop: report(run_once(stop)), name=name)
        if signum is not None:
            click.echo("aborted", err=True)
            click.get_current_context().exit(128 + signum)
        return

    stdout_closed: list[BrokenPipeError] = []

    def schedule(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                report(run_once(stop))
            except (InvalidArgumentError, UnknownTopicOrPartitionError):
                raise  # a mistake in the command line: no later run would do better
            except BrokenPipeError as exc:  # the reader of stdout went away: stop
                stdout_closed.append(exc)
                return
            except Exception as exc:  # noqa: BLE001 - a scheduler outlives one bad run
                message = (str(exc) if isinstance(exc, LogstoreError)
                           else f"unexpected {type(exc).__name__}: {exc}")
                click.echo(f"error: {one_line(message or type(exc).__name__)} (the next run "
                           "tries again)", err=True)
            stop.wait(interval_s)

    run_stoppable(schedule, name=name)
    if stdout_closed:
        raise stdout_closed[0]  # the root group exits quietly with 0
