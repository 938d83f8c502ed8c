"""The benchmarks' optional libraries, checked before a run starts.

``python -m bench`` needs the ``bench`` extra (matplotlib for the plots, redis-py and nats-py
for the peers); ``python -m bench.tiering`` needs moto's server (in the ``test`` extra) for its
S3 part. Found missing only where they are used, they would end a run minutes in (the plots
are drawn after the last measurement, 14 minutes into a full run); :func:`require` checks them
first and exits at once with one line saying what to install, or which option does without.
The other entry points (``bench/compaction.py``, ``produce_consume.py``, ``rebalance.py``,
``transactions.py``, ``records_micro.py``, ``offset_map_micro.py``) need only logstore.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass

BENCH_INSTALL = "pip install '.[bench]'"
TEST_INSTALL = "pip install '.[test]'"


@dataclass(frozen=True)
class Need:
    """An optional library a run will import: its import name, and what it is for (said in
    the error, with the option that does without it)."""

    module: str
    purpose: str


def missing(needs: Iterable[Need]) -> list[Need]:
    """The needs whose module does not import (absent, or broken: the import is the check)."""
    absent = []
    for need in needs:
        try:
            importlib.import_module(need.module)
        except ImportError:
            absent.append(need)
    return absent


def require(needs: Iterable[Need], *, program: str, install: str) -> None:
    """Return if every need imports; else print one ``error:`` line naming what is missing,
    what for, and ``install`` (the command that installs it), and exit with status 2."""
    absent = missing(needs)
    if absent:
        what = "; ".join(f"{need.module} {need.purpose}" for need in absent)
        print(f"error: {program} needs {what}; install with: {install}", file=sys.stderr)
        raise SystemExit(2)
