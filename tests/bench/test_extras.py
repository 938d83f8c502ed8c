"""The benchmarks check their optional libraries before anything runs: a missing one ends
``python -m bench`` (or ``python -m bench.tiering``) at once with one ``error:`` line naming the
install command, exit code 2, instead of a traceback minutes into a run."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_HINT = "install with: pip install '.[bench]'"


def run_blocked(tmp_path: Path, module: str, *args: str | Path,
                blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the repository root, with ``blocked`` unimportable (a
    ``sitecustomize`` on PYTHONPATH puts None in ``sys.modules`` for them). Its data would go
    under ``tmp_path``; a run that started anyway is killed, with its children, after 60 s."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTORE_")}
    env.update(PYTHONPATH=str(shim), TMPDIR=str(tmp_path))
    with subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"python -m {module} started running without {', '.join(blocked)}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_bench_without_its_extra_fails_at_once_in_one_line(tmp_path: Path) -> None:
    result = run_blocked(tmp_path, "bench", "--dir", tmp_path, "--out-dir", tmp_path / "out",
                         blocked=("matplotlib", "redis", "nats"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: python -m bench needs matplotlib for the plots (or --no-plots); redis for "
        "redis-always, redis-everysec (or --systems without them); nats for nats (or --systems "
        f"without them); {BENCH_HINT}\n")
    assert not (tmp_path / "out").exists()


def test_bench_needs_matplotlib_for_the_plots_only(tmp_path: Path) -> None:
    # A saved full run, rendered again (--from-json): no measurement, only the plots need more.
    runs = sorted((ROOT / "bench" / "results").glob("????-??-??.json"))
    assert runs, "bench/results holds no saved run"
    saved = tmp_path / "saved.json"
    saved.write_text(runs[-1].read_text())
    out = tmp_path / "out"
    plotted = run_blocked(tmp_path, "bench", "--from-json", saved, "--out-dir", out,
                          blocked=("matplotlib",))
    assert plotted.returncode == 2
    assert plotted.stderr == (
        f"error: python -m bench needs matplotlib for the plots (or --no-plots); {BENCH_HINT}\n")
    assert not out.exists()
    unplotted = run_blocked(tmp_path, "bench", "--from-json", saved, "--out-dir", out,
                            "--no-plots", blocked=("matplotlib", "redis", "nats"))
    assert unplotted.returncode == 0, unplotted.stderr
    assert (out / "saved.md").is_file()


def test_bench_needs_the_client_libraries_of_the_chosen_systems_only() -> None:
    main = importlib.import_module("bench.__main__")

    def needs(*argv: str) -> list[str]:
        return [need.module for need in main._needs(main._parser().parse_args(argv))]

    assert needs() == ["matplotlib", "confluent_kafka", "kafka", "aiokafka", "redis", "nats"]
    assert needs("--no-plots", "--systems", "logstore-broker-confluent") == ["confluent_kafka"]
    assert needs("--no-plots", "--systems", "logstore-embedded-os,logstore-processes-fsync") == []
    assert needs("--no-plots", "--systems", "redis-everysec") == ["redis"]
    assert needs("--systems", "nats", "--from-json", "x.json") == ["matplotlib"]


def test_tiering_bench_without_moto_fails_at_once_in_one_line(tmp_path: Path) -> None:
    result = run_blocked(tmp_path, "bench.tiering", "--dir", tmp_path, "--out",
                         tmp_path / "out.json", "--mb", "1", "--skip", "memory", "latency",
                         blocked=("moto",))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == ("error: python -m bench.tiering needs moto.server for the S3 part "
                             "(or --skip s3); install with: pip install '.[test]'\n")
    assert not (tmp_path / "out.json").exists()
