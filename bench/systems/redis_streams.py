"""Redis Streams through redis-py: pipelined XADD, and XREAD from the first entry.

A topic of n partitions is n stream keys. The producer sends each burst to one key (keys in
turn), as one pipeline (``transaction=False``): a record is acknowledged when the pipeline's
replies arrive, which with ``appendfsync always`` is after Redis fsynced its AOF. The consumer
reads every key with one blocking XREAD per poll. Producer and consumer each have their own
connection and run as threads of this process (hiredis parses replies when installed).
"""

from __future__ import annotations

import importlib.util
import itertools
import uuid
from pathlib import Path
from typing import Any

from bench.driver import run_in_process
from bench.systems import AckCallback, SystemUnavailable
from bench.systems.redis_server import RedisServer
from bench.workloads import RunResult, RunSpec

PIPELINE_DEPTH = 256
"""Commands per pipeline in the max-rate and backlog runs (the fixed-rate run pipelines
whatever is due at once)."""
XREAD_COUNT = 1000
_FIELD = b"v"
_topics = itertools.count()


class RedisStreams:
    """:class:`bench.systems.System` and :class:`bench.systems.InProcess` for Redis Streams."""

    def __init__(self, appendfsync: str, base_dir: Path | None, *,
                 fallback_url: str = "redis://127.0.0.1:6379") -> None:
        self.name = f"redis-streams ({appendfsync})"
        self.durability = "fsync" if appendfsync == "always" else "os"
        self.config = ""
        self._server = RedisServer(appendfsync, base_dir, fallback_url)
        self._prefix = f"bench:{uuid.uuid4().hex[:8]}"

    def start(self) -> None:
        self._server.start()
        if importlib.util.find_spec("hiredis") is not None:
            parser = "hiredis parser"
        else:
            parser = "pure-Python parser (hiredis not installed)"
        self.config = (
            f"{self._server.description}; redis-py, {parser}; pipelines of {PIPELINE_DEPTH} "
            f"XADD (max-rate) or of what is due (fixed-rate); XREAD BLOCK COUNT {XREAD_COUNT}"
        )

    def stop(self) -> None:
        self._server.stop()

    def run(self, spec: RunSpec) -> RunResult:
        if self._server.client is None:
            raise SystemUnavailable("not started")
        return run_in_process(self, spec, f"{self._prefix}:{next(_topics)}")

    def create_topic(self, topic: str, partitions: int) -> None:
        self._server.client.delete(*_keys(topic, partitions))

    def delete_topic(self, topic: str) -> None:
        keys = list(self._server.client.scan_iter(match=f"{topic}:*"))
        if keys:
            self._server.client.delete(*keys)
        self._server.compact()

    def producer(self, topic: str, partitions: int, mode: str) -> RedisProducer:
        return RedisProducer(self._server.connect(), _keys(topic, partitions))

    def consumer(self, topic: str, partitions: int) -> RedisConsumer:
        return RedisConsumer(self._server.connect(), _keys(topic, partitions))

    def server_pids(self) -> list[int]:
        return [self._server.pid] if self._server.pid is not None else []


def _keys(topic: str, partitions: int) -> list[str]:
    return [f"{topic}:{p}" for p in range(partitions)]


class RedisProducer:
    """:class:`bench.systems.ProducerClient`: one pipeline per burst."""

    burst = PIPELINE_DEPTH

    def __init__(self, client: Any, keys: list[str]) -> None:
        self._client = client
        self._keys = keys
        self._pipeline = client.pipeline(transaction=False)
        self._callbacks: list[AckCallback] = []

    def send(self, value: bytes, partition: int, on_ack: AckCallback | None) -> None:
        self._pipeline.xadd(self._keys[partition], {_FIELD: value})
        if on_ack is not None:
            self._callbacks.append(on_ack)

    def end_burst(self) -> None:
        """Execute the pipeline: returns when Redis has answered every command in it."""
        self._pipeline.execute()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(True)

    def flush(self) -> None:
        if len(self._pipeline):
            self.end_burst()

    def close(self) -> None:
        self._pipeline.reset()
        self._client.close()


class RedisConsumer:
    """:class:`bench.systems.ConsumerClient`: XREAD over every key, from the first entry."""

    def __init__(self, client: Any, keys: list[str]) -> None:
        self._client = client
        self._positions: dict[str, bytes | str] = dict.fromkeys(keys, "0-0")
        self._count = max(64, XREAD_COUNT // len(keys))

    def poll(self, timeout_s: float) -> list[bytes]:
        reply = self._client.xread(self._positions, count=self._count,
                                   block=max(1, int(timeout_s * 1000)))
        values: list[bytes] = []
        for key, entries in reply or ():
            if entries:
                self._positions[key.decode()] = entries[-1][0]
                values.extend(fields[_FIELD] for _, fields in entries)
        return values

    def close(self) -> None:
        self._client.close()
