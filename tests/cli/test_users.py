"""``logstore users add | list | delete``: passwords from a prompt or stdin (never the command
line), credentials stored salted, JSON listing, one-line errors; and a user added by the CLI
logging in to a real ``logstore serve`` over SASL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from logstore.backends.security_records import ScramMechanism

import logstore
from logstore.broker.auth import verify_password

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"


def test_add_reads_the_password_from_stdin_and_stores_only_salted_keys(run, api) -> None:
    result = run("users", "add", "alice", "--password-stdin", input="s3cret\nignored\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "user alice added (SCRAM-SHA-256, SCRAM-SHA-512)\n"
    stored = api.metadata.list_scram_credentials("alice")
    assert [c.mechanism for c in stored] == list(ScramMechanism)
    assert all(verify_password(c, "s3cret") and c.iterations == 8192 for c in stored)
    assert all(b"s3cret" not in c.stored_key + c.server_key + c.salt for c in stored)


def test_add_prompts_on_a_terminal_and_confirms(run, api, monkeypatch) -> None:
    monkeypatch.setattr("logstore.cli.users.stdin_is_tty", lambda: True)
    result = run("users", "add", "bob", "--mechanism", "SCRAM-SHA-512", "--iterations", "4096",
                 input="pw1\npw1\n")
    assert result.exit_code == 0, result.stderr
    assert "pw1" not in result.stdout + result.stderr, "the prompt does not echo"
    [stored] = api.metadata.list_scram_credentials("bob")
    assert stored.mechanism is ScramMechanism.SCRAM_SHA_512 and stored.iterations == 4096
    assert verify_password(stored, "pw1")


def test_without_a_terminal_or_stdin_option_there_is_no_password(run) -> None:
    result = run("users", "add", "alice", input="s3cret\n")
    assert result.exit_code == 1
    assert result.stderr == ("error: no terminal to prompt for the password: pipe it in with "
                             "--password-stdin\n")
    assert run("users", "add", "alice", "--password-stdin", input="\n").stderr == (
        "error: no password on stdin (the first line is the password)\n")


def test_adding_twice_is_an_error_and_update_changes_the_password(run, api) -> None:
    assert run("users", "add", "alice", "--password-stdin", input="one\n").exit_code == 0
    again = run("users", "add", "alice", "--password-stdin", input="two\n")
    assert again.exit_code == 1
    assert again.stderr == ("error: user 'alice' already exists (--update changes its "
                            "password)\n")
    updated = run("users", "add", "alice", "--update", "--mechanism", "SCRAM-SHA-256",
                  "--password-stdin", input="two\n")
    assert updated.stdout == "user alice updated (SCRAM-SHA-256)\n"
    [stored] = api.metadata.list_scram_credentials("alice")
    assert stored.mechanism is ScramMechanism.SCRAM_SHA_256 and verify_password(stored, "two")
    missing = run("users", "add", "carol", "--update", "--password-stdin", input="x\n")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_list_in_text_and_json(run) -> None:
    assert run("users", "list").stdout == "USER  MECHANISMS  ITERATIONS  CREATED\n"
    run("users", "add", "alice", "--password-stdin", input="pw\n")
    run("users", "add", "bob", "--mechanism", "SCRAM-SHA-256", "--password-stdin",
        input="pw\n")
    lines = run("users", "list").stdout.splitlines()
    assert [line.split()[:3] for line in lines[1:]] == [
        ["alice", "SCRAM-SHA-256,SCRAM-SHA-512", "8192,8192"], ["bob", "SCRAM-SHA-256", "8192"]]
    listed = json.loads(run("users", "list", "--format", "json").stdout)
    assert [u["user"] for u in listed] == ["alice", "bob"]
    assert listed[1]["mechanisms"] == [{"mechanism": "SCRAM-SHA-256", "iterations": 8192}]
    assert "key" not in json.dumps(listed) and "salt" not in json.dumps(listed)


def test_delete(run, api) -> None:
    run("users", "add", "alice", "--password-stdin", input="pw\n")
    assert run("users", "delete", "alice").stdout == "user alice deleted\n"
    assert api.metadata.list_scram_credentials() == []
    gone = run("users", "delete", "alice")
    assert gone.exit_code == 1 and gone.stderr == "error: user 'alice' does not exist\n"


def test_bad_values_are_one_line_errors(run) -> None:
    assert run("users", "add", "alice", "--iterations", "100", "--password-stdin",
               input="pw\n").exit_code == 2
    bad = run("users", "add", "a" * 300, "--password-stdin", input="pw\n")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: a user name must be")


@pytest.mark.slow
def test_a_user_added_by_the_cli_logs_in_to_logstore_serve(tmp_path: Path,
                                                           serve_process) -> None:
    data = tmp_path / "data"
    subprocess.run([str(LOGSTORE_BIN), "--data-dir", str(data), "users", "add", "alice",
                    "--password-stdin"], input="s3cret\n", text=True, check=True,
                   capture_output=True)
    proc, port = serve_process(data, "--security-protocol", "SASL_PLAINTEXT",
                               "--sasl-mechanism", "SCRAM-SHA-512")
    try:
        base = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "alice"}
        producer = Producer({**base, "sasl.password": "s3cret"})
        producer.produce("served", value=b"hello")
        assert producer.flush(30) == 0
        errors: list[KafkaError] = []
        wrong = Producer({**base, "sasl.password": "nope", "error_cb": errors.append})
        deadline = time.monotonic() + 20
        while not errors and time.monotonic() < deadline:
            wrong.poll(0.1)
        assert errors and errors[0].code() == KafkaError._AUTHENTICATION
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "authentication failed (SCRAM-SHA-512, user 'alice')" in err
    assert "nope" not in err and "Traceback" not in err
    with logstore.open(data, maintenance_interval_ms=None) as log:
        assert log.partition_log("served", 0).log_end_offset() == 1


def test_serve_refuses_tls_options_without_tls(run, tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("not a certificate")
    result = run("serve", "--listen", "127.0.0.1:0", "--tls-cert", str(pem), "--tls-key",
                 str(pem))
    assert result.exit_code == 1
    assert result.stderr == ("error: --tls-cert, --tls-key given for a PLAINTEXT listener, "
                             "which does not use TLS (--security-protocol SSL or SASL_SSL "
                             "does)\n")
    bad = run("serve", "--listen", "127.0.0.1:0", "--security-protocol", "SSL", "--tls-cert",
              str(pem), "--tls-key", str(pem))
    assert bad.exit_code == 1 and bad.stderr.startswith("error: cannot load the TLS "
                                                        "certificate")
