"""NATS JetStream through nats-py: async publish with acknowledgements, a pull consumer.

A topic is one stream with file storage (one replica) whose subjects ``<topic>.<partition>``
are its partitions; it is created for the run and deleted after. The producer publishes each
burst to one subject (subjects in turn) with ``publish_async`` (at most nats-py's default of
4000 unacknowledged publishes in flight) and a record is acknowledged when the stream's PubAck
arrives. The consumer is an ephemeral pull consumer of every subject with ``AckPolicy.NONE``,
delivering from the first message, fetching up to ``FETCH_BATCH`` messages per poll.

nats-py is asyncio-only: its event loop runs on a thread of its own, and the benchmark's
producer and consumer threads hand it bursts and fetches (``run_coroutine_threadsafe``).

Durability: the stream's file store writes each message to the operating system before it
acknowledges it (so it survives a crash of the server process) and fsyncs every
``sync_interval`` (default 2 minutes); servers before 2.10 have no setting that fsyncs each
write. It is therefore matched with logstore ``durability=os`` and Redis ``everysec``.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar
from urllib.parse import urlparse

from bench.driver import run_in_process
from bench.resources import pid_listening_on
from bench.systems import AckCallback, SystemUnavailable
from bench.workloads import RunResult, RunSpec

DEFAULT_URL = "nats://127.0.0.1:4222"
MAX_RATE_BURST = 512
FETCH_BATCH = 1000
CALL_TIMEOUT_S = 120.0
_topics = itertools.count()
T = TypeVar("T")


class _Loop:
    """An asyncio event loop on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-nats-loop",
                                        daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        """Run ``coroutine`` on the loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class NatsJetStream:
    """:class:`bench.systems.System` and :class:`bench.systems.InProcess` for JetStream."""

    durability = "os"

    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.name = "nats-jetstream"
        self.config = ""
        self._url = url
        self._loop: _Loop | None = None
        self._nc: Any = None
        self._js: Any = None
        self._pid: int | None = None

    def start(self) -> None:
        try:
            import nats
        except ImportError:
            raise SystemUnavailable("the client library nats-py is not installed") from None
        address = urlparse(self._url)
        try:  # a plain TCP probe first: nats-py logs every failed attempt with a traceback
            socket.create_connection((address.hostname, address.port or 4222), timeout=2).close()
        except OSError as exc:
            raise SystemUnavailable(f"no NATS server at {self._url} ({exc})") from None
        self._loop = _Loop()
        try:
            self._nc = self._loop.call(
                nats.connect(self._url, connect_timeout=2, allow_reconnect=False,
                             max_reconnect_attempts=0, error_cb=_ignore), timeout_s=10)
            self._js = self._nc.jetstream()
            self._loop.call(self._js.account_info(), timeout_s=10)
        except Exception as exc:  # noqa: BLE001 - any failure here: the peer is unavailable
            self.stop()
            raise SystemUnavailable(
                f"no NATS server with JetStream at {self._url} ({type(exc).__name__}: {exc})"
            ) from None
        self._pid = pid_listening_on(address.port or 4222)
        version = self._nc.connected_server_version
        self.config = (
            f"nats-server {version.major}.{version.minor}.{version.patch} at {self._url}; "
            f"streams with file storage, 1 replica, "
            f"server default sync_interval; nats-py publish_async (max 4000 pending), "
            f"bursts of {MAX_RATE_BURST} (max-rate); pull consumer, AckPolicy.NONE, fetch "
            f"batches of {FETCH_BATCH}"
            + ("" if self._pid else "; server process not visible: no server CPU/disk figures")
        )

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._nc is not None:
            try:
                self._loop.call(self._nc.close(), timeout_s=10)
            except Exception:  # noqa: BLE001, S110 - closing a broken connection: nothing to do
                pass
            self._nc = None
        self._loop.close()
        self._loop = None

    def run(self, spec: RunSpec) -> RunResult:
        return run_in_process(self, spec, f"bench-{next(_topics)}")

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise SystemUnavailable("not started")
        return self._loop.call(coroutine)

    def create_topic(self, topic: str, partitions: int) -> None:
        from nats.js.api import StorageType

        self._call(self._js.add_stream(name=topic, subjects=[f"{topic}.*"],
                                       storage=StorageType.FILE, num_replicas=1))

    def delete_topic(self, topic: str) -> None:
        self._call(self._js.delete_stream(topic))

    def producer(self, topic: str, partitions: int, mode: str) -> NatsProducer:
        assert self._loop is not None
        return NatsProducer(self._loop, self._js, [f"{topic}.{p}" for p in range(partitions)])

    def consumer(self, topic: str, partitions: int) -> NatsConsumer:
        assert self._loop is not None
        return NatsConsumer(self._loop, self._js, topic)

    def server_pids(self) -> list[int]:
        return [self._pid] if self._pid is not None else []


async def _ignore(error: Exception) -> None:
    """nats-py's error callback: connection errors surface as exceptions of the calls."""


class NatsProducer:
    """:class:`bench.systems.ProducerClient`: each burst is published on the loop thread."""

    burst = MAX_RATE_BURST

    def __init__(self, loop: _Loop, js: Any, subjects: list[str]) -> None:
        self._loop = loop
        self._js = js
        self._subjects = subjects
        self._queued: list[tuple[str, bytes, AckCallback | None]] = []

    def send(self, value: bytes, partition: int, on_ack: AckCallback | None) -> None:
        self._queued.append((self._subjects[partition], value, on_ack))

    def end_burst(self) -> None:
        """Publish the burst; returns once every message is written to the connection (their
        acknowledgements arrive later)."""
        queued, self._queued = self._queued, []
        self._loop.call(self._publish(queued))

    async def _publish(self, queued: list[tuple[str, bytes, AckCallback | None]]) -> None:
        publish = self._js.publish_async
        for subject, value, on_ack in queued:
            future = await publish(subject, value)
            future.add_done_callback(_retrieve if on_ack is None else _acknowledge(on_ack))

    def flush(self) -> None:
        if self._queued:
            self.end_burst()
        self._loop.call(self._js.publish_async_completed())

    def close(self) -> None:
        self._queued = []


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen (a lost record shows as the consumer receiving fewer)."""
    if not future.cancelled():
        future.exception()


def _acknowledge(on_ack: AckCallback) -> Any:
    def done(future: asyncio.Future[Any]) -> None:
        on_ack(not future.cancelled() and future.exception() is None)

    return done


class NatsConsumer:
    """:class:`bench.systems.ConsumerClient`: an ephemeral pull consumer of every subject."""

    def __init__(self, loop: _Loop, js: Any, topic: str) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        self._loop = loop
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
        self._subscription = loop.call(
            js.pull_subscribe(f"{topic}.*", stream=topic, config=config))

    def poll(self, timeout_s: float) -> list[bytes]:
        try:
            messages = self._loop.call(
                self._subscription.fetch(batch=FETCH_BATCH, timeout=timeout_s))
        except TimeoutError:
            return []
        return [m.data for m in messages]

    def close(self) -> None:
        try:
            self._loop.call(self._subscription.unsubscribe(), timeout_s=10)
        except Exception:  # noqa: BLE001, S110 - the stream may already be gone
            pass
