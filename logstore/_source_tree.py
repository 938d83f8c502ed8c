"""Make a source checkout importable from its root, as installations map it.

The repository's top-level folders ``backends/``, ``compaction/``, ``cli/`` and ``alembic/`` are
installed as ``logstore.backends``, ``logstore.compaction``, ``logstore.cli`` and
``logstore.migrations`` (setuptools ``package-dir`` in pyproject.toml). Python started in the
repository root (``python -c``, a notebook, ``python -m pytest``) finds ``./logstore/`` first,
where those subpackages are not: :func:`install` adds a finder that maps exactly these four
names to the folders beside the package. Nothing else changes: ``alembic`` and the other
top-level names resolve as before (``alembic/`` has no ``__init__.py``, so the Alembic library
still wins), and compiled extensions missing from a checkout leave the pure-Python fallbacks.

An installed package (regular: ``logstore/backends/`` exists; or a wheel) is left alone. In an
editable install the finder also serves ``logstore.migrations``, which setuptools' editable
finder cannot resolve (a folder without ``__init__.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_file_location
from pathlib import Path
from types import ModuleType

# Must match [tool.setuptools] package-dir in pyproject.toml (tests/test_packaging.py checks).
SUBPACKAGE_FOLDERS = {
    "logstore.backends": "backends",
    "logstore.compaction": "compaction",
    "logstore.cli": "cli",
    "logstore.migrations": "alembic",
}


class SourceTreeFinder(MetaPathFinder):
    """Finds the mapped subpackages of one source tree; every other name is left to the
    finders after it. Stateless after construction (safe from any thread)."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        init = folder / "__init__.py"
        if init.is_file():
            return spec_from_file_location(fullname, init,
                                           submodule_search_locations=[str(folder)])
        # A namespace package (alembic/ has no __init__.py on purpose): no loader, a path.
        spec = ModuleSpec(fullname, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec


def source_root(package_dir: Path) -> Path | None:
    """The repository root if ``package_dir`` (the ``logstore`` package's folder) is in a source
    checkout, else None (an installed package, with the subpackages inside it)."""
    root = package_dir.parent
    if (package_dir / "backends").is_dir() or not (root / "pyproject.toml").is_file():
        return None
    if not all((root / folder).is_dir() for folder in SUBPACKAGE_FOLDERS.values()):
        return None
    return root


def install(package_dir: Path) -> SourceTreeFinder | None:
    """Put a :class:`SourceTreeFinder` for the checkout around ``package_dir`` first on
    ``sys.meta_path`` (idempotent); returns it, or None outside a source checkout.

    First, not last: the subpackages must come from the tree the ``logstore`` package itself
    was imported from, not from another checkout an editable install points at."""
    root = source_root(package_dir)
    if root is None:
        return None
    for finder in sys.meta_path:
        if isinstance(finder, SourceTreeFinder):
            return finder
    finder = SourceTreeFinder({name: root / folder for name, folder in SUBPACKAGE_FOLDERS.items()})
    sys.meta_path.insert(0, finder)
    return finder


install(Path(__file__).resolve().parent)
