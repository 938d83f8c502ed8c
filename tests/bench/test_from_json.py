"""``python -m bench --from-json FILE`` with a FILE that is not a saved run (missing, a folder,
not JSON, another benchmark's JSON) ends with one ``error:`` line naming it, exit code 2, and
writes nothing: a user mistake, not a traceback."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_file_is_one_error_line_from_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-run.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSTORE_")}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--from-json", str(missing), "--no-plots",
         "--out-dir", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error: --from-json {missing}: no such file\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("content", "reason"), [
    (None, "is a directory, not a results file"),
    (b"{not json", ("not JSON (Expecting property name enclosed in double quotes at line 1 "
                    "column 2)")),
    (b"\xff\xfe\x00", "not a text file"),
    (b"[1, 2]", "not the results of a python -m bench run"),
    (b'{"date": "2026-01-01", "runs": []}',
     ("not the results of a python -m bench run (it has no 'command', 'mode', 'elapsed_s', "
      "'machine', 'settings', 'limits', 'systems')")),
], ids=["directory", "not-json", "binary", "not-an-object", "another-document"])
def test_a_file_that_is_not_a_saved_run_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, reason: str
) -> None:
    main = importlib.import_module("bench.__main__")
    path = tmp_path / "saved.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    out = tmp_path / "out"
    assert main.main(["--from-json", str(path), "--no-plots", "--out-dir", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: --from-json {path}: {reason}\n"
    assert not out.exists()
