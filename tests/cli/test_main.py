"""The root group: global options, help, error policy, and real processes through pipes."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from logstore.cli.main import cli

import logstore


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


ALL_COMMANDS = _command_paths(cli)


def test_the_command_tree_is_complete() -> None:
    names = {" ".join(path) for path in ALL_COMMANDS}
    assert {"topics create", "topics list", "topics describe", "topics alter", "topics delete",
            "produce", "tail", "dump", "demo", "db upgrade", "maintenance", "groups list",
            "groups describe", "groups reset-offsets", "groups delete"} <= names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "logstore")
def test_every_help_ends_with_an_example(run, path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0
    example = result.stdout.rindex("Example:")
    assert "logstore " in result.stdout[example:]
    assert "Options:" in result.stdout[:example]


def test_unknown_topic_is_one_error_line(run) -> None:
    result = run("tail", "nosuch")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["error: unknown topic 'nosuch'"]


def test_usage_error_is_one_line_with_exit_code_2(run) -> None:
    result = run("tail", "t", "--bogus")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and "--bogus" in lines[0]
    assert "logstore tail --help" in lines[0]


def test_unknown_command_is_a_usage_error(run) -> None:
    result = run("frobnicate")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "frobnicate" in result.stderr


def test_unexpected_exception_hides_the_traceback(run, monkeypatch) -> None:
    def boom(self: logstore.Log) -> list[str]:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(logstore.Log, "list_topics", boom)
    monkeypatch.delenv("LOGSTORE_DEBUG", raising=False)
    result = run("topics", "list")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unexpected RuntimeError: boom second line")
    assert "LOGSTORE_DEBUG=1" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_env_shows_the_traceback(run, monkeypatch) -> None:
    def boom(self: logstore.Log) -> list[str]:
        raise RuntimeError("boom")

    monkeypatch.setattr(logstore.Log, "list_topics", boom)
    result = run("topics", "list", env={"LOGSTORE_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: unexpected RuntimeError: boom"


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    from click.testing import CliRunner

    elsewhere = tmp_path / "from-env"
    runner = CliRunner()
    created = runner.invoke(cli, ["topics", "create", "t"],
                            env={"LOGSTORE_DATA_DIR": str(elsewhere)})
    assert created.exit_code == 0, created.stderr
    assert (elsewhere / "topics" / "t").is_dir()
    listed = runner.invoke(cli, ["topics", "list"], env={"LOGSTORE_DATA_DIR": str(elsewhere)})
    assert listed.stdout.split() == ["t"]


def test_metadata_url_selects_the_metadata_database(run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other-metadata.db'}"
    assert run("--metadata-url", url, "topics", "create", "only-there").exit_code == 0
    assert (tmp_path / "other-metadata.db").exists()
    assert run("--metadata-url", url, "topics", "list").stdout.split() == ["only-there"]
    assert run("topics", "list").stdout.split() == []


@pytest.mark.parametrize(("option", "message"), [
    ("--data-dir", "error: --data-dir must not be empty (use '.' for the current directory)"),
    ("--metadata-url", "error: --metadata-url must not be empty"),
    ("--object-store", "error: --object-store must not be empty"),
])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_or_url_is_a_usage_error(tmp_path: Path, monkeypatch, option: str,
                                                message: str, value: str) -> None:
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [option, value, "topics", "create", "t"])
    assert result.exit_code == 2
    assert result.stderr == f"{message} (see 'logstore --help')\n"
    assert list(tmp_path.iterdir()) == []  # nothing created in the current directory


@pytest.mark.parametrize("variable", ["LOGSTORE_DATA_DIR", "LOGSTORE_METADATA_URL",
                                      "LOGSTORE_OBJECT_STORE"])
def test_an_empty_environment_variable_is_unset(tmp_path: Path, monkeypatch,
                                                 variable: str) -> None:
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["topics", "create", "t"], env={variable: ""})
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "logstore-data" / "topics" / "t").is_dir()  # the default
    blank = runner.invoke(cli, ["topics", "list"], env={variable: " "})
    assert blank.exit_code == 2
    assert blank.stderr == (f"error: {variable} is blank (unset it for the default) "
                            "(see 'logstore --help')\n")


def test_commands_that_need_no_log_do_not_open_one(run, data_dir: Path) -> None:
    assert run("topics", "--help").exit_code == 0
    assert not data_dir.exists()


def test_version(run) -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert logstore.__version__ in result.stdout


# --- real processes -------------------------------------------------------------------------


def test_produce_and_tail_round_trip_through_real_pipes(shell) -> None:
    assert shell("logstore topics create t").returncode == 0
    produced = shell("printf 'a\\nb\\n' | logstore produce t")
    assert produced.returncode == 0, produced.stderr
    assert produced.stderr == b"produced 2 records to t\n"
    tailed = shell("logstore tail t --from-beginning")
    assert tailed.returncode == 0, tailed.stderr
    assert tailed.stdout == b"a\nb\n"
    assert tailed.stderr == b""


def test_real_process_user_error_is_one_line(shell) -> None:
    result = shell("logstore tail nosuch")
    assert result.returncode == 1
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "Traceback" not in result.stderr.decode()


def test_real_process_refuses_an_empty_data_dir(shell, tmp_path: Path) -> None:
    result = shell("logstore --data-dir '' topics create t")
    assert result.returncode == 2
    assert result.stderr == (b"error: --data-dir must not be empty (use '.' for the current "
                             b"directory) (see 'logstore --help')\n")
    assert list(tmp_path.iterdir()) == []  # the current directory was not used


def test_closed_pipe_exits_quietly(shell, tmp_path: Path, produce) -> None:
    # Far more output than a pipe buffers, so writes continue after head has exited.
    with logstore.open(tmp_path / "logstore-data", maintenance_interval_ms=None) as log:
        log.create_topic("big")
        produce(log, "big", [b"record-%06d" % i for i in range(30_000)])
    result = shell("logstore tail big --from-beginning | head -1; "
                   "echo \"status=${PIPESTATUS[0]}\" >&2")
    assert result.stdout == b"record-000000\n"
    assert result.stderr == b"status=0\n"


def test_a_bare_group_shows_its_help(run) -> None:
    result = run("topics")
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: logstore topics")
    assert "create" in result.stderr and "Example:" in result.stderr
