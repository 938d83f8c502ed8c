"""The broker's Prometheus endpoint (``logstore serve --metrics-listen HOST:PORT``).

Each broker has a registry of its own (several brokers may share a process) holding one
collector, :class:`BrokerCollector`, which reports at each scrape:

* the counters of :class:`~logstore.broker.metrics.BrokerMetrics` (requests, latency, errors,
  bytes and messages per topic, connections), named as the Prometheus JMX exporter names Kafka's
  MBeans: ``kafka.network:type=RequestMetrics,name=RequestsPerSec,request=Produce`` becomes
  ``kafka_network_requestmetrics_requests_total{request="Produce"}`` (domain, type and name
  lower-cased and joined; a ``...PerSec`` meter is a counter ending ``_total``; a ``...Ms``
  timer a histogram in seconds);
* storage gauges read from the embedded Log (log start and end offset, size and segments per
  partition, as ``kafka.log:type=Log``) and consumer group offsets and lag (kafka_exporter's
  ``kafka_consumergroup_lag``), computed at most once per ``storage_max_age_ms`` (5 s): a
  scrape costs a walk over every partition and group, so scrapes in between share the last one.

The HTTP server is prometheus_client's WSGI server on a thread of its own; :meth:`stop` closes
it (the broker stops it before closing the log).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from logstore.broker.metrics import (
    LATENCY_BUCKETS_S,
    BrokerMetrics,
    MetricsSnapshot,
    error_name,
)
from logstore.clock import Clock
from logstore.errors import InvalidArgumentError, LogstoreError, StorageError
from logstore.types import PartitionDescription, PartitionLag

if TYPE_CHECKING:
    from logstore.broker.server import BrokerServices
    from logstore.embedded import Log

_log = logging.getLogger("logstore.broker")

#: How long a scrape reuses the storage gauges of the previous one.
DEFAULT_STORAGE_MAX_AGE_MS = 5_000


def validate_listen(value: object) -> None:
    """Check ``BrokerConfig.metrics_listen``: None or (host, port)."""
    if value is None:
        return
    if (not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[0], str)
            or isinstance(value[1], bool) or not isinstance(value[1], int)
            or not 0 <= value[1] <= 65535):
        raise InvalidArgumentError(
            f"metrics_listen must be None or (host, port), got {value!r}")


@dataclass(frozen=True, slots=True)
class StorageSnapshot:
    """The storage facts one scrape reports."""

    partitions: tuple[tuple[str, PartitionDescription], ...] = ()
    lags: tuple[tuple[str, PartitionLag], ...] = ()
    """(group id, its lag on one partition)."""


class StorageGauges:
    """Partition offsets and group lag read from the Log, cached for ``max_age_ms``.

    Thread-safe: concurrent scrapes wait for one walk rather than each making their own."""

    def __init__(self, log: Log, *, max_age_ms: int = DEFAULT_STORAGE_MAX_AGE_MS,
                 clock: Clock | None = None) -> None:
        self._log = log
        self._max_age_ms = max_age_ms
        self._clock = clock or log.clock
        self._lock = threading.Lock()
        self._snapshot: StorageSnapshot | None = None
        self._taken_ms = 0.0

    def snapshot(self) -> StorageSnapshot:
        with self._lock:
            now_ms = self._clock.monotonic_ms()
            if self._snapshot is None or now_ms - self._taken_ms >= self._max_age_ms:
                self._snapshot = self._read()
                self._taken_ms = now_ms
            return self._snapshot

    def _read(self) -> StorageSnapshot:
        log = self._log
        partitions: list[tuple[str, PartitionDescription]] = []
        lags: list[tuple[str, PartitionLag]] = []
        try:
            for topic in log.list_topics():
                try:
                    count = log.topic_info(topic)[0]
                except LogstoreError:
                    continue  # deleted since it was listed
                for partition in range(count):
                    try:
                        partitions.append((topic, log.partition_log(topic, partition).describe()))
                    except LogstoreError:
                        continue  # offline, or deleted meanwhile: no offsets to report
            for group in log.list_groups():
                try:
                    lags.extend((group.group_id, lag) for lag in log.group_lag(group.group_id))
                except LogstoreError:
                    continue
        except LogstoreError as exc:  # the log is closing: report what was read
            _log.debug("metrics: storage gauges cut short: %s", exc)
        return StorageSnapshot(tuple(partitions), tuple(lags))


class BrokerCollector(Collector):
    """Every metric of one broker, built at each scrape (see the module docstring)."""

    def __init__(self, metrics: BrokerMetrics, connection_count: Callable[[], int],
                 storage: StorageGauges | None) -> None:
        self._metrics = metrics
        self._connection_count = connection_count
        self._storage = storage

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot()
        yield from _request_metrics(snap)
        yield from _topic_metrics(snap)
        yield from _connection_metrics(snap, self._connection_count())
        if self._storage is not None:
            yield from _storage_metrics(self._storage.snapshot())


def _request_metrics(snap: MetricsSnapshot) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "kafka_network_requestmetrics_requests", "Requests served (RequestsPerSec).",
        labels=("request", "version"))
    for (name, version), count in sorted(snap.requests.items()):
        requests.add_metric((name, str(version)), count)
    yield requests
    latency = HistogramMetricFamily(
        "kafka_network_requestmetrics_totaltime_seconds",
        "Time from a request's frame being read to its response being written "
        "(TotalTimeMs, in seconds).", labels=("request",))
    for name, counts in sorted(snap.latency_buckets.items()):
        cumulative, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), counts, strict=True):
            running += count
            cumulative.append((_bound(bound), running))
        latency.add_metric((name,), cumulative, snap.latency_sum_s.get(name, 0.0))
    yield latency
    errors = CounterMetricFamily(
        "kafka_network_requestmetrics_errors",
        "Error codes answered, per partition where the API answers per partition "
        "(ErrorsPerSec; NONE included).", labels=("request", "error"))
    for (name, code), count in sorted(snap.errors.items()):
        errors.add_metric((name, error_name(code)), count)
    yield errors


def _topic_metrics(snap: MetricsSnapshot) -> Iterator[Metric]:
    topics = snap.topics
    for field_name, metric, help_text in _TOPIC_COUNTERS:
        family = CounterMetricFamily(f"kafka_server_brokertopicmetrics_{metric}", help_text,
                                     labels=("topic",))
        for topic, counters in sorted(topics.items()):
            family.add_metric((topic,), getattr(counters, field_name))
        yield family


def _connection_metrics(snap: MetricsSnapshot, connection_count: int) -> Iterator[Metric]:
    prefix = "kafka_server_socket_server_metrics_"
    yield GaugeMetricFamily(prefix + "connection_count", "Open client connections.",
                            value=connection_count)
    yield CounterMetricFamily(prefix + "connection_creation", "Connections accepted.",
                              value=snap.connections_created)
    yield CounterMetricFamily(prefix + "incoming_byte", "Bytes of request frames served.",
                              value=snap.bytes_received)
    yield CounterMetricFamily(prefix + "outgoing_byte", "Bytes of responses sent.",
                              value=snap.bytes_sent)
    yield CounterMetricFamily(
        "logstore_broker_connections_closed_protocol_error",
        "Connections closed for a frame over socket.request.max.bytes or that does not "
        "parse.", value=snap.protocol_errors)
    yield CounterMetricFamily(
        "logstore_broker_connections_refused",
        "Connections refused because max.connections were open.",
        value=snap.connections_refused)


_TOPIC_COUNTERS = (
    ("bytes_in", "bytesin", "Record batch bytes appended (BytesInPerSec)."),
    ("bytes_out", "bytesout", "Record batch bytes sent to fetches (BytesOutPerSec)."),
    ("messages_in", "messagesin", "Records appended (MessagesInPerSec)."),
    ("produce_requests", "totalproducerequests",
     "Partitions of produce requests (TotalProduceRequestsPerSec)."),
    ("failed_produce_requests", "failedproducerequests",
     "Partitions of produce requests answered with an error (FailedProduceRequestsPerSec)."),
    ("fetch_requests", "totalfetchrequests",
     "Partitions of fetch requests (TotalFetchRequestsPerSec)."),
    ("failed_fetch_requests", "failedfetchrequests",
     "Partitions of fetch requests answered with an error (FailedFetchRequestsPerSec)."),
)


def _storage_metrics(snapshot: StorageSnapshot) -> Iterator[Metric]:
    labels = ("topic", "partition")
    end = GaugeMetricFamily("kafka_log_log_logendoffset", "Log end offset (LogEndOffset).",
                            labels=labels)
    start = GaugeMetricFamily("kafka_log_log_logstartoffset",
                              "Log start offset (LogStartOffset).", labels=labels)
    size = GaugeMetricFamily("kafka_log_log_size", "Bytes of the partition's segments (Size).",
                             labels=labels)
    segments = GaugeMetricFamily("kafka_log_log_numlogsegments",
                                 "Segments of the partition (NumLogSegments).", labels=labels)
    for topic, description in snapshot.partitions:
        key = (topic, str(description.partition))
        end.add_metric(key, description.log_end_offset)
        start.add_metric(key, description.log_start_offset)
        size.add_metric(key, description.size_bytes)
        segments.add_metric(key, description.segment_count)
    yield from (end, start, size, segments)
    group_labels = ("consumergroup", "topic", "partition")
    current = GaugeMetricFamily("kafka_consumergroup_current_offset",
                                "A group's committed offset (kafka_exporter's name).",
                                labels=group_labels)
    lag = GaugeMetricFamily("kafka_consumergroup_lag",
                            "Log end offset minus the group's committed offset.",
                            labels=group_labels)
    for group, entry in snapshot.lags:
        key = (group, entry.topic, str(entry.partition))
        if entry.committed_offset is not None:
            current.add_metric(key, entry.committed_offset)
        if entry.lag is not None:
            lag.add_metric(key, entry.lag)
    yield from (current, lag)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def registry_for(services: BrokerServices, *, storage_max_age_ms: int =
                 DEFAULT_STORAGE_MAX_AGE_MS) -> CollectorRegistry:
    """A registry of this broker's metrics (its own: not prometheus_client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(
        services.metrics, lambda: len(services.connections),
        StorageGauges(services.log, max_age_ms=storage_max_age_ms)))
    return registry


class MetricsEndpoint:
    """A running Prometheus endpoint: ``GET http://HOST:PORT/metrics``.

    ``start`` binds (port 0: any free port; ``address`` is then the bound one) and serves on a
    thread of its own; ``stop`` shuts it down and closes the socket. Thread-safe."""

    def __init__(self, server: WSGIServer, thread: threading.Thread,
                 address: tuple[str, int]) -> None:
        self._server = server
        self._thread = thread
        self._stopped = False
        self._stop_lock = threading.Lock()
        self.address = address

    @classmethod
    def start(cls, registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise StorageError(f"cannot listen on {host}:{port} for metrics: "
                               f"{exc.strerror or exc}") from exc
        bound = server.server_address
        endpoint = cls(server, thread, (str(bound[0]), int(bound[1])))
        _log.info("metrics on http://%s:%d/metrics", *endpoint.address)
        return endpoint

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and close the socket (idempotent)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)
