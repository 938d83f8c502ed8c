"""``logstore serve`` as a real process: it serves Kafka clients, stops cleanly on SIGTERM
(exit 0) and reports a port it cannot use in one line."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Producer

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"


def start(data_dir: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([str(LOGSTORE_BIN), "--data-dir", str(data_dir), "serve",
                             "--listen", "127.0.0.1:0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1))
    proc.kill()
    raise AssertionError(f"the broker did not start: {proc.communicate()}")


def test_serve_answers_clients_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc, port = start(tmp_path / "data")
    try:
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{port}", "acks": "all"})
        for i in range(10):
            producer.produce("served", value=b"%d" % i)
        assert producer.flush(30) == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    import logstore

    with logstore.open(tmp_path / "data", maintenance_interval_ms=None) as log:
        assert log.partition_log("served", 0).log_end_offset() == 10


def test_a_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        done = subprocess.run([str(LOGSTORE_BIN), "--data-dir", str(tmp_path / "d"), "serve",
                               "--listen", f"127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        taken.close()
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([str(LOGSTORE_BIN), "--data-dir", str(tmp_path / "d"), "serve",
                           "--listen", "nonsense"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr
