"""The systems under test, each behind the small :class:`System` protocol.

A system whose clients run in this process (embedded logstore, Redis, NATS) implements
:class:`InProcess` and gets its runs from ``bench.driver.run_in_process``; one whose clients
run elsewhere (logstore in separate processes) implements ``run`` itself with the same
driver loops. This package imports no client library: adapters are imported by name only when
selected (see ``bench.systems.registry``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from bench.workloads import RunResult, RunSpec

AckCallback = Callable[[bool], object]
"""Called once a record is acknowledged (True) or failed (False), on any thread."""

THROUGHPUT = "throughput"
LATENCY = "latency"


class SystemUnavailable(Exception):
    """The system cannot run here (server unreachable, client library missing): skip it."""


class ProducerClient(Protocol):
    """One producer of one topic."""

    burst: int
    """Records per burst in the max-rate run (e.g. the Redis pipeline depth)."""

    def send(self, value: bytes, partition: int, on_ack: AckCallback | None) -> None:
        """Queue one record for ``partition`` (a hint: a system may partition by itself)."""

    def end_burst(self) -> None:
        """Hand over what ``send`` queued (e.g. execute a pipeline); may return before the
        acknowledgements arrive."""

    def flush(self) -> None:
        """Wait until every record sent so far is acknowledged or failed."""

    def close(self) -> None: ...


class ConsumerClient(Protocol):
    """One consumer of every partition of one topic, from the first record."""

    def poll(self, timeout_s: float) -> Collection[bytes]:
        """Values of the next records (empty when none arrived within ``timeout_s``)."""

    def close(self) -> None: ...


class System(Protocol):
    """A system under test."""

    name: str
    durability: str
    """The durability class it is matched in: ``fsync`` (an acknowledged write survives power
    loss) or ``os`` (it survives a crash of the process, not of the machine)."""
    config: str
    """How it was configured, in one line, for the report."""

    def start(self) -> None:
        """Connect or start servers; raise :class:`SystemUnavailable` to be skipped."""

    def run(self, spec: RunSpec) -> RunResult: ...

    def stop(self) -> None: ...


class InProcess(Protocol):
    """Topic admin and clients of a system whose clients run in this process."""

    def create_topic(self, topic: str, partitions: int) -> None: ...

    def delete_topic(self, topic: str) -> None: ...

    def producer(self, topic: str, partitions: int, mode: str) -> ProducerClient:
        """A producer tuned for ``mode``: THROUGHPUT (max-rate, backlog) or LATENCY
        (fixed-rate)."""

    def consumer(self, topic: str, partitions: int) -> ConsumerClient: ...

    def server_pids(self) -> list[int]:
        """Server processes whose CPU and disk writes count toward this system."""
