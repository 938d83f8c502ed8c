"""Stopping long-running commands cleanly on SIGINT / SIGTERM.

The handler only records the signal and sets an event that the command's loop (or the job it
runs) checks at safe points. Raising from the handler instead could land anywhere in the
library, even between taking a lock and entering its ``with`` block. The first signal restores
the previous handlers, so a second one acts as it would without this (Ctrl-C twice: abort now).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopOnSignal:
    """While entered, the first SIGINT or SIGTERM sets ``stop`` and ``signum``. Outside the
    main thread it installs nothing (signals belong to the embedding program)."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop if stop is not None else threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def stopped(self) -> bool:
        return self.stop.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()
        self.stop.set()

    def _restore(self) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def __enter__(self) -> StopOnSignal:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()
