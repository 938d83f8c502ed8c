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
    the ``logstore/`` folder would shadow the installed package: the source tree imports from
    its root too (``logstore/_source_tree.py``), but with a regular (non-editable) install it is
    not the code installed, and it may lack the compiled C accelerator. The ``bench`` package
    itself is already imported by then, and its submodules are found through
    ``bench.__path__``, not ``sys.path``.
    """
    root = os.path.realpath(REPOSITORY_ROOT)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != root]
