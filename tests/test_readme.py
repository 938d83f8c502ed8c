"""The README's quickstarts run as written (in a scratch directory)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block(language: str, index: int = 0) -> str:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)[index]


def test_the_first_two_lines_are_the_set_up_commands() -> None:
    lines = block("sh").strip().splitlines()
    assert lines == ["pip install . && logstore demo", "pip install '.[test]' && pytest"]
    # .ci/run must run that same test command
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "sed -n '3p'" in ci and "eval \"$test_command\"" in ci


def test_python_quickstart_runs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", block("python")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "b'user-42' b'{\"total\": 42}' (('source', b'web'),)" in result.stdout


def test_cli_quickstart_runs(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("LOGSTORE_DATA_DIR", None)
    script = "set -euo pipefail\n" + block("sh", 1)
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert "user-1\thello\nuser-2\tworld\n" in result.stdout
    assert "baseOffset: 0 lastOffset: 1 count: 2" in result.stdout
    assert "\nhello\nworld\n" in result.stdout, "tail --group printed the values"
    assert "billing" in result.stdout
    assert (tmp_path / "data" / "metadata.db").exists()
