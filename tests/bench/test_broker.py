"""The broker's benchmark parts work end to end (no timings are checked): each client library
of the ``logstore-broker-*`` systems sends records through a ``logstore serve`` process and reads
every one back, and ``bench.broker_kcat`` moves its records through kcat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import broker_kcat, broker_latency
from bench.systems.logstore_broker import CLIENTS, LogstoreBroker
from bench.workloads import BACKLOG, RunSpec

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


def test_a_run_has_its_producer_and_consumer_in_processes_of_their_own(tmp_path: Path) -> None:
    """The measured path: ``LogstoreBroker.run`` spawns a producer and a consumer worker
    process against the broker and reports what they did and the broker's share of the CPU."""
    system = LogstoreBroker("confluent", tmp_path)
    system.start()
    try:
        result = system.run(RunSpec(BACKLOG, partitions=2, value_bytes=100, duration_s=1.0,
                                    records=2_000))
    finally:
        system.stop()
    assert result.error is None
    assert result.produced == result.consumed == 2_000
    assert [p.name for p in result.phases] == ["produce", "consume"]
    for phase in result.phases:
        assert phase.server_cpu_s is not None and 0 < phase.server_cpu_s <= phase.cpu_s


def test_broker_latency_times_acknowledgements(capsys: pytest.CaptureFixture[str]) -> None:
    assert broker_latency.main(["--rate", "2000", "--seconds", "0.5",
                                "--sample-every", "10"]) == 0
    line = capsys.readouterr().out
    assert "consumer none: ack p50" in line and "(100 samples)" in line
