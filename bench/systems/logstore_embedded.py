"""Embedded logstore: producer and consumer are threads of this process, one ``Log``."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import logstore
from bench.driver import run_in_process
from bench.systems.logstore_clients import LogstoreConsumer, LogstoreProducer, describe_options
from bench.workloads import RunResult, RunSpec

_topics = itertools.count()


class LogstoreEmbedded:
    """:class:`bench.systems.System` and :class:`bench.systems.InProcess` for embedded
    logstore with topic config ``durability`` = ``fsync`` or ``os``."""

    def __init__(self, durability: str, base_dir: Path | None) -> None:
        self.durability = durability
        self.name = f"logstore-embedded ({durability})"
        self.config = f"topic durability={durability}; producer {describe_options()}"
        self._base_dir = base_dir
        self._dir: Path | None = None
        self._log: logstore.Log | None = None

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="bench-logstore-", dir=self._base_dir))
        self._log = logstore.open(self._dir, maintenance_interval_ms=None)

    def stop(self) -> None:
        if self._log is not None:
            self._log.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def run(self, spec: RunSpec) -> RunResult:
        return run_in_process(self, spec, f"bench-{next(_topics)}")

    def _require_log(self) -> logstore.Log:
        if self._log is None:
            raise RuntimeError("start() first")
        return self._log

    def create_topic(self, topic: str, partitions: int) -> None:
        self._require_log().create_topic(topic, partitions, config={"durability": self.durability})

    def delete_topic(self, topic: str) -> None:
        self._require_log().delete_topic(topic)

    def producer(self, topic: str, partitions: int, mode: str) -> LogstoreProducer:
        return LogstoreProducer(self._require_log(), topic, mode)

    def consumer(self, topic: str, partitions: int) -> LogstoreConsumer:
        return LogstoreConsumer(self._require_log(), topic, partitions)

    def server_pids(self) -> list[int]:
        return []

