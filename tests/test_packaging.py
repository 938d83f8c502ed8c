"""The wheel holds every module: build it, install it into a fresh virtual environment (its
dependencies from the package index, nothing from this environment), import every module of the
source tree from there, and run the console script.

setuptools silently drops unlisted subpackages from a regular install, and the top-level
folders here are mapped into ``logstore.*`` by package-dir: this is the test that notices.

The source tree also imports from its root, as installed (``logstore/_source_tree.py``): in this
environment, in a copy of the sources without compiled extensions, and in a fresh environment
holding only the dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from logstore._source_tree import SUBPACKAGE_FOLDERS

ROOT = Path(__file__).resolve().parent.parent
# What a checkout needs to import logstore (tests, bench and docs are not part of it).
SOURCE_FOLDERS = ("logstore", *SUBPACKAGE_FOLDERS.values())


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
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def clean_env() -> dict[str, str]:
    """This environment without LOGSTORE_* settings (LOGSTORE_REQUIRE_SPEEDUPS, data dirs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOGSTORE_")}


def check_source_tree_imports(python: Path | str, root: Path, tmp_path: Path) -> bool:
    """Run ``python`` in ``root`` (a source checkout): every module of the tree imports, from
    ``root``; ``alembic`` is still the library; the metadata migrations run; ``python -m
    logstore.cli.main`` works. Returns whether the C accelerator was loaded."""
    probe = (
        "import importlib, json, sys\n"
        # First, before the loop imports logstore._source_tree by name.
        "import alembic, logstore.migrations\n"
        f"names = {sorted(source_modules())!r}\n"
        "files = {n: importlib.import_module(n).__file__ for n in names}\n"
        "from logstore.backends.migrate import migrations_location\n"
        "from logstore.records.speedups import accelerated\n"
        "print(json.dumps({'files': files, 'alembic': alembic.__file__,\n"
        "                  'migrations': list(logstore.migrations.__path__),\n"
        "                  'location': str(migrations_location()),\n"
        "                  'accelerated': accelerated()}))\n"
    )
    found = json.loads(run(python, "-c", probe, cwd=root, env=clean_env()))
    elsewhere = {n: f for n, f in found["files"].items() if not Path(f).is_relative_to(root)}
    assert not elsewhere, f"imported from outside {root}: {elsewhere}"
    assert found["files"]["logstore.backends.metadata"] == str(root / "backends" / "metadata.py")
    assert not Path(found["alembic"]).is_relative_to(root), "alembic/ shadows the library"
    assert found["migrations"] == [str(root / "alembic")]
    assert found["location"] == str(root / "alembic")

    data_dir = tmp_path / "cli-data"
    cli = (python, "-m", "logstore.cli.main", "--data-dir", data_dir)
    assert "Example" in run(*cli, "--help", cwd=root, env=clean_env())
    created = run(*cli, "topics", "create", "from-source", cwd=root, env=clean_env())
    assert created.startswith("created topic from-source")  # the migrations ran from root
    return bool(found["accelerated"])


def test_subpackage_folders_match_pyproject() -> None:
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    top_level = {name: folder for name, folder in package_dir.items()
                 if name != "logstore" and "/" not in folder}
    assert top_level == SUBPACKAGE_FOLDERS


def test_the_source_tree_imports_from_its_root(tmp_path: Path) -> None:
    check_source_tree_imports(sys.executable, ROOT, tmp_path)


def test_a_copy_without_extensions_imports_from_its_root(tmp_path: Path) -> None:
    # Another checkout: its own subpackages win over those of an (editable) installation, and
    # without compiled extensions the pure-Python code is used.
    checkout = tmp_path / "checkout"
    for folder in SOURCE_FOLDERS:
        shutil.copytree(ROOT / folder, checkout / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    shutil.copy(ROOT / "pyproject.toml", checkout)
    assert check_source_tree_imports(sys.executable, checkout, tmp_path) is False


@pytest.mark.slow
def test_the_source_tree_imports_from_its_root_without_installing(tmp_path: Path) -> None:
    # A fresh environment with logstore's dependencies only (from the package index).
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    run(python, "-m", "pip", "install", "--quiet", *dependencies, cwd=tmp_path)
    assert run(python, "-c", "import importlib.util as u; print(u.find_spec('logstore'))",
               cwd=tmp_path, env=clean_env()).strip() == "None"
    check_source_tree_imports(python, ROOT, tmp_path)


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_with_every_module(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("logstore-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)

    env = clean_env()
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
        "print(any(type(f).__name__ == 'SourceTreeFinder' for f in sys.meta_path))\n"
    )
    out = run(python, "-c", probe, cwd=tmp_path, env=env).splitlines()
    assert out[0].startswith(str(venv)), f"imported logstore from {out[0]}, not the fresh venv"
    # This machine has a C compiler, so the optional extension must have been built in.
    assert out[1] == "True"
    assert out[2] == "False"  # an installed package maps nothing
    # From the repository root the checkout is imported instead, whole.
    check_source_tree_imports(python, ROOT, tmp_path)

    logstore_cli = venv / "bin" / "logstore"
    assert "Example" in run(logstore_cli, "--help", cwd=tmp_path, env=env)
    demo = run(logstore_cli, "demo", cwd=tmp_path, env=env)
    assert "1000" in demo and (tmp_path / "logstore-data").is_dir()
