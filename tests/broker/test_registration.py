"""The broker registers itself in the metadata store while it runs (``logstore brokers list``):
its id, advertised listener and rack, a session it renews and ends at a clean stop; a second
broker with the same id waits until the first is gone, then takes the next broker epoch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from logstore.backends.broker_records import BrokerRegistration
from logstore.cli.main import cli

import logstore
from logstore.broker import Broker, BrokerConfig

WAIT_S = 20.0


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds: the keeper works on its own schedule."""
    done = threading.Event()
    for _ in range(int(WAIT_S / 0.05)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def registered(log: logstore.Log) -> list[BrokerRegistration]:
    return log.metadata.list_brokers()


def test_a_running_broker_is_registered_and_a_stopped_one_is_not(tmp_path: Path) -> None:
    log = logstore.open(tmp_path / "data", maintenance_interval_ms=None)
    broker = Broker(log, config=BrokerConfig(listen_port=0, broker_id=5, rack="rack-a",
                                             advertised_host="kafka5.example.com"))
    broker.start()
    try:
        assert broker.address is not None
        eventually(lambda: len(registered(log)) == 1, "the registration")
        (mine,) = registered(log)
        assert (mine.broker_id, mine.host, mine.port, mine.rack, mine.epoch, mine.alive) == (
            5, "kafka5.example.com", broker.address[1], "rack-a", 1, True)
        listing = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), "brokers",
                                           "list"])
        assert listing.exit_code == 0, listing.output
        assert f"kafka5.example.com:{broker.address[1]}" in listing.output
        assert "alive" in listing.output and "rack-a" in listing.output
    finally:
        broker.stop()
    (ended,) = registered(log)  # the row stays, so the id's next epoch is 2
    assert (ended.broker_id, ended.epoch, ended.alive) == (5, 1, False)
    log.close()


def test_a_second_broker_with_the_same_id_waits_for_the_first(tmp_path: Path) -> None:
    log = logstore.open(tmp_path / "data", maintenance_interval_ms=None)
    first = Broker(log, config=BrokerConfig(listen_port=0, broker_id=1))
    first.start()
    second: Broker | None = None
    try:
        eventually(lambda: len(registered(log)) == 1, "the first registration")
        second = Broker(log, config=BrokerConfig(listen_port=0, broker_id=1))
        second.start()  # it serves; its registration is refused while the first one lives
        assert first.address is not None and second.address is not None
        (holder,) = registered(log)
        assert holder.port == first.address[1]
        first.stop()
        second_port = second.address[1]
        eventually(lambda: [(b.port, b.epoch, b.alive) for b in registered(log)] == [
            (second_port, 2, True)], "the second broker to take the id over")
    finally:
        first.stop()
        if second is not None:
            second.stop()
        log.close()
