"""Every backends module imports on its own, first, in a fresh interpreter: the sql_* modules
import each other's helpers, and a cycle among them would only show in some import orders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BACKENDS = Path(__file__).resolve().parents[2] / "backends"
MODULES = sorted(p.stem for p in BACKENDS.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", f"import logstore.backends.{module}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
