"""``logstore db upgrade``."""

from __future__ import annotations

from pathlib import Path

from logstore.backends import migrate


def test_upgrade_a_new_database_then_again(run, data_dir: Path) -> None:
    first = run("db", "upgrade")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == f"metadata schema upgraded: empty -> {migrate.HEAD_REVISION}\n"
    assert migrate.current_revision(f"sqlite:///{data_dir / 'metadata.db'}") == \
        migrate.HEAD_REVISION
    again = run("db", "upgrade")
    assert again.exit_code == 0
    assert again.stdout == f"metadata schema already at {migrate.HEAD_REVISION}: nothing to do\n"


def test_upgrade_uses_the_metadata_url(run, tmp_path: Path, data_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert run("--metadata-url", url, "db", "upgrade").exit_code == 0
    assert migrate.current_revision(url) == migrate.HEAD_REVISION
    assert not (data_dir / "metadata.db").exists()


def test_upgrade_of_an_unreachable_database_is_one_error_line(run) -> None:
    result = run("--metadata-url", "nosuchdialect://x/y", "db", "upgrade")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
