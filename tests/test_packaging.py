"""The wheel holds every module: build it, install it into a fresh virtual environment (its
dependencies from the package index, nothing from this environment), import every module of the
source tree from there, and run the console script.

setuptools silently drops unlisted subpackages from a regular install, and the top-level
folders here are mapped into ``logstore.*`` by package-dir: this is the test that notices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def source_modules() -> set[str]:
    """Every module the source tree defines, by the name it is installed under."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules: set[str] = set()
    for package, folder in config["package-dir"].items():
        directory = ROOT / folder
        for path in directory.glob("*.py"):
            modules.add(package if path.stem == "__init__" else f"{package}.{path.stem}")
    modules.discard("logstore.migrations.env")  # run by Alembic by path, not importable alone
    return {m for m in modules if not m.startswith("logstore.migrations.versions.")}


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_with_every_module(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("logstore-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTORE_")}
    expected = sorted(source_modules())
    assert "logstore.backends.sql_metadata" in expected and "logstore.cli.main" in expected
    probe = (
        "import importlib, sys, logstore\n"
        f"names = {expected!r}\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "from logstore.backends.migrate import migrations_location\n"
        "location = migrations_location()\n"
        "assert (location / 'env.py').is_file() and (location / 'script.py.mako').is_file()\n"
        "assert list((location / 'versions').glob('0001_*.py'))\n"
        "from logstore.records.speedups import accelerated\n"
        "print(logstore.__file__)\n"
        "print(accelerated())\n"
    )
    out = run(python, "-c", probe, cwd=tmp_path, env=env).splitlines()
    assert out[0].startswith(str(venv)), f"imported logstore from {out[0]}, not the fresh venv"
    # This machine has a C compiler, so the optional extension must have been built in.
    assert out[1] == "True"

    logstore_cli = venv / "bin" / "logstore"
    assert "Example" in run(logstore_cli, "--help", cwd=tmp_path, env=env)
    demo = run(logstore_cli, "demo", cwd=tmp_path, env=env)
    assert "1000" in demo and (tmp_path / "logstore-data").is_dir()
