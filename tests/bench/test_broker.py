"""The broker's benchmark parts work end to end (no timings are checked): each client library
of the ``logstore-broker-*`` systems sends records through a ``logstore serve`` process and reads
every one back, and ``bench.broker_kcat`` moves its records through kcat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import broker_kcat
from bench.systems.logstore_broker import CLIENTS, LogstoreBroker

RECORDS = 200


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_gets_back_every_record_it_sent(client: str, tmp_path: Path) -> None:
    system = LogstoreBroker(client, tmp_path)
    system.start()
    try:
        system.create_topic("t", 2)
        acked: list[bool] = []
        producer = system.producer("t", 2, "backlog")
        for i in range(RECORDS):
            producer.send(b"value-%05d" % i, i % 2, acked.append)
        producer.end_burst()
        producer.flush()
        producer.close()
        consumer = system.consumer("t", 2)
        received: list[bytes] = []
        for _ in range(200):
            received.extend(consumer.poll(0.5))
            if len(received) >= RECORDS:
                break
        consumer.close()
        assert sorted(received) == [b"value-%05d" % i for i in range(RECORDS)]
        assert acked == [True] * RECORDS
        assert len(system.server_pids()) == 1
    finally:
        system.stop()
    assert system.server_pids() == []


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_broker_kcat_moves_every_record_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "kcat.json"
    assert broker_kcat.main(["--records", "3000", "--sizes", "100", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["records"] == 3000 and row["value_bytes"] == 100
    for phase in ("produce", "consume_read_uncommitted", "consume_read_committed"):
        assert row[f"{phase}_records_per_s"] > 0
        assert row[f"{phase}_broker_cpu_s_per_gb"] >= 0
