"""The broker's counters: requests and their latency per API, bytes and messages per topic,
connections, error codes. ``metrics_http`` exposes them to Prometheus (``--metrics-listen``).

Updated on the event loop only, with plain integers and dicts (an increment costs well under a
microsecond on the request path). The Prometheus endpoint reads them from its own thread through
:meth:`BrokerMetrics.snapshot`, which copies them; a copy may be a request behind, never torn
within one counter.

Request names are Kafka's (``ApiKeys.name``: ``Produce``, ``OffsetCommit``...), and Fetch
requests are counted as ``FetchConsumer`` in the request counts and latencies, as Kafka does
(``FetchFollower`` is for replicas' fetches), but as ``Fetch`` in the error counts.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kio.schema.errors import ErrorCode

from logstore.errors import LogstoreError
from logstore.protocol.apis import ApiKey
from logstore.protocol.fetch_response import PartitionFetch
from logstore.protocol.frames import read_fixed
from logstore.types import AppendResult

K = TypeVar("K")
V = TypeVar("V")

#: Upper bounds (seconds) of the request latency histogram's buckets; long-poll fetches wait up
#: to the client's ``fetch.wait.max.ms`` (500 ms by default), hence the upper buckets.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: The request name of consumers' Fetch requests in request counts and latencies (Kafka's).
FETCH_CONSUMER = "FetchConsumer"
#: The request label of errors that closed a connection before any API was known to serve it.
UNKNOWN_REQUEST = "unknown"
_UNKNOWN_SERVER_ERROR = -1
#: Errors that say nothing of a topic's existence: counted for a topic only once it has
#: counters, so requests naming made-up topics cannot grow the table (or the scrape) without end.
_TOPIC_UNKNOWN_ERRORS = frozenset((
    int(ErrorCode.unknown_topic_or_partition), int(ErrorCode.invalid_topic_exception),
    int(ErrorCode.topic_authorization_failed)))


def request_name(api_key: int) -> str:
    """Kafka's name of an API (``ApiKeys.name``): ``OFFSET_FOR_LEADER_EPOCH`` ->
    ``OffsetForLeaderEpoch``; ``Api<key>`` for a key logstore has no name for."""
    try:
        return "".join(word.capitalize() for word in ApiKey(api_key).name.split("_"))
    except ValueError:
        return f"Api{api_key}"


def error_name(code: int) -> str:
    """Kafka's name of an error code (``Errors``: ``NONE``, ``UNKNOWN_TOPIC_OR_PARTITION``)."""
    try:
        return ErrorCode(code).name.upper()
    except ValueError:
        return str(code)


@dataclass(slots=True)
class TopicCounters:
    """Kafka's BrokerTopicMetrics of one topic (counts since the broker started)."""

    bytes_in: int = 0
    """Record batch bytes appended (BytesInPerSec)."""
    bytes_out: int = 0
    """Record batch bytes sent to fetches (BytesOutPerSec)."""
    messages_in: int = 0
    """Records appended (MessagesInPerSec); retried duplicates count once."""
    produce_requests: int = 0
    """Partitions of produce requests (TotalProduceRequestsPerSec)."""
    failed_produce_requests: int = 0
    """Of those, answered with an error (FailedProduceRequestsPerSec)."""
    fetch_requests: int = 0
    """Partitions of fetch requests (TotalFetchRequestsPerSec)."""
    failed_fetch_requests: int = 0
    """Of those, answered with an error (FailedFetchRequestsPerSec)."""


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """A copy of every counter at one moment (what a scrape reports)."""

    requests: Mapping[tuple[str, int], int]
    """(request name, API version) -> requests served."""
    latency_buckets: Mapping[str, Sequence[int]]
    """Request name -> requests per latency bucket (not cumulative; the last is +Inf)."""
    latency_sum_s: Mapping[str, float]
    errors: Mapping[tuple[str, int], int]
    """(request name, error code) -> partitions or requests answered with it."""
    topics: Mapping[str, TopicCounters]
    connections_created: int
    connections_refused: int
    protocol_errors: int
    bytes_received: int
    bytes_sent: int


class BrokerMetrics:
    """Counters of one broker since it started. Updated on the broker's event loop;
    :meth:`snapshot` may be called from any thread."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()
        """API key -> requests served (the Prometheus view adds the version)."""
        self.request_seconds: Counter[int] = Counter()
        """API key -> seconds spent serving its requests."""
        self._by_version: dict[tuple[int, int], int] = {}
        self._latency: dict[int, list[int]] = {}
        self.errors: dict[tuple[int, int], int] = {}
        """(API key, error code) -> times answered (UNKNOWN_REQUEST's key is -1)."""
        self.topics: dict[str, TopicCounters] = {}
        self.bytes_sent = 0
        self.bytes_received = 0
        """Bytes of the request frames served (sizes included)."""
        self.connections_created = 0
        self.protocol_errors = 0
        self.connections_refused = 0

    # --- the request path (event loop) -----------------------------------------------------

    def request_done(self, frame: bytes, seconds: float) -> None:
        """One request served (its frame, without the size), in ``seconds``."""
        api_key, api_version, _ = read_fixed(frame)
        self.requests[api_key] += 1
        self.request_seconds[api_key] += seconds
        key = (api_key, api_version)
        self._by_version[key] = self._by_version.get(key, 0) + 1
        buckets = self._latency.get(api_key)
        if buckets is None:
            buckets = self._latency[api_key] = [0] * (len(LATENCY_BUCKETS_S) + 1)
        buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.bytes_received += len(frame) + 4

    def connection_opened(self) -> None:
        self.connections_created += 1

    def bytes_out(self, count: int) -> None:
        self.bytes_sent += count

    def protocol_error(self) -> None:
        """A connection closed for a frame too large or that does not parse (Kafka's
        INVALID_REQUEST, counted under the request name ``unknown``)."""
        self.protocol_errors += 1
        self._error(-1, ErrorCode.invalid_request)

    def connection_refused(self) -> None:
        self.connections_refused += 1

    def produce_done(self, work: Sequence[tuple[str, int, bytes | None]],
                     outcomes: Sequence[AppendResult | BaseException]) -> None:
        """A produce request's partitions ((topic, partition, batch) each) and what their
        appends gave."""
        for (topic, _, records), outcome in zip(work, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                code = (outcome.error_code if isinstance(outcome, LogstoreError)
                        else _UNKNOWN_SERVER_ERROR)
                self._error(ApiKey.PRODUCE, code)
                counters = self._topic(topic, code)
                if counters is not None:
                    counters.produce_requests += 1
                    counters.failed_produce_requests += 1
                continue
            self._error(ApiKey.PRODUCE, 0)
            counters = self._counters(topic)
            counters.produce_requests += 1
            if not outcome.duplicate:
                counters.bytes_in += len(records or b"")
                counters.messages_in += outcome.last_offset - outcome.base_offset + 1

    def fetch_done(self, topics: Iterable[tuple[str, Sequence[PartitionFetch]]]) -> None:
        """A fetch response's partitions, by topic."""
        for topic, partitions in topics:
            for partition in partitions:
                self._error(ApiKey.FETCH, partition.error_code)
                counters = self._topic(topic, partition.error_code)
                if counters is None:
                    continue
                counters.fetch_requests += 1
                counters.bytes_out += partition.records_size
                if partition.error_code:
                    counters.failed_fetch_requests += 1

    def _topic(self, topic: str, error_code: int) -> TopicCounters | None:
        """The topic's counters; None for an error saying the topic may not exist, unless it
        has counters already."""
        if error_code in _TOPIC_UNKNOWN_ERRORS:
            return self.topics.get(topic)
        return self._counters(topic)

    def _counters(self, topic: str) -> TopicCounters:
        counters = self.topics.get(topic)
        if counters is None:
            counters = self.topics[topic] = TopicCounters()
        return counters

    def _error(self, api_key: int, code: int) -> None:
        key = (int(api_key), int(code))
        self.errors[key] = self.errors.get(key, 0) + 1

    # --- reading (any thread) --------------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        """A copy of the counters (from any thread: each dict is copied in one step under the
        GIL, retried if the event loop added a key meanwhile)."""
        by_version = _copy(self._by_version)
        latency = {key: list(buckets) for key, buckets in _copy(self._latency).items()}
        seconds = _copy(self.request_seconds)
        requests: dict[tuple[str, int], int] = {}
        for (api_key, version), count in by_version.items():
            name = _latency_name(api_key)
            requests[(name, version)] = requests.get((name, version), 0) + count
        return MetricsSnapshot(
            requests=requests,
            latency_buckets={_latency_name(key): b for key, b in latency.items()},
            latency_sum_s={_latency_name(key): s for key, s in seconds.items()},
            errors={(UNKNOWN_REQUEST if key < 0 else request_name(key), code): count
                    for (key, code), count in _copy(self.errors).items()},
            topics={topic: TopicCounters(c.bytes_in, c.bytes_out, c.messages_in,
                                         c.produce_requests, c.failed_produce_requests,
                                         c.fetch_requests, c.failed_fetch_requests)
                    for topic, c in _copy(self.topics).items()},
            connections_created=self.connections_created,
            connections_refused=self.connections_refused,
            protocol_errors=self.protocol_errors,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
        )


def _latency_name(api_key: int) -> str:
    return FETCH_CONSUMER if api_key == ApiKey.FETCH else request_name(api_key)


def _copy(mapping: Mapping[K, V]) -> dict[K, V]:
    while True:
        try:
            return dict(mapping)
        except RuntimeError:  # changed size during the copy: take it again
            continue
