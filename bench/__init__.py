"""logstore's benchmark suite: ``python -m bench`` (see ``bench/__main__.py``).

Importing this package imports nothing of logstore: the entry points first call
:func:`drop_repository_root`, so the logstore they measure is the installed one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def drop_repository_root() -> None:
    """Remove the repository root from ``sys.path``.

    ``python -m bench`` run from the repository root puts the root first on ``sys.path``, where
    the ``logstore/`` folder would shadow the installed package. That folder lacks the
    subpackages (``backends``, ``cli``, ...) which only the installation maps into
    ``logstore``, so with a regular (non-editable) install ``import logstore`` would fail or
    measure the wrong code. The ``bench`` package itself is already imported by then, and its
    submodules are found through ``bench.__path__``, not ``sys.path``.
    """
    root = os.path.realpath(REPOSITORY_ROOT)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != root]
