"""``logstore serve`` as a real process: it serves Kafka clients, stops cleanly on SIGTERM
(exit 0) and reports a port it cannot use in one line."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from confluent_kafka import Producer

LOGSTORE_BIN = Path(sys.executable).parent / "logstore"


def test_serve_answers_clients_and_stops_cleanly_on_sigterm(tmp_path: Path,
                                                            serve_process) -> None:
    proc, port = serve_process(tmp_path / "data")
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
