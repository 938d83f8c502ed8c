"""The systems by command-line name; adapters (and their client libraries) are imported only
when selected."""

from __future__ import annotations

from pathlib import Path

from bench.systems import System

NAMES = (
    "logstore-embedded-fsync",
    "logstore-embedded-os",
    "logstore-processes-fsync",
    "logstore-broker-confluent",
    "logstore-broker-kafka-python",
    "logstore-broker-aiokafka",
    "redis-always",
    "redis-everysec",
    "nats",
)
# The client library each adapter imports (from the `bench` extra); embedded logstore's
# need none.
CLIENT_LIBRARIES = {"redis-always": "redis", "redis-everysec": "redis", "nats": "nats",
                    "logstore-broker-confluent": "confluent_kafka",
                    "logstore-broker-kafka-python": "kafka",
                    "logstore-broker-aiokafka": "aiokafka"}


def create(name: str, base_dir: Path | None, *, redis_url: str = "redis://127.0.0.1:6379",
           nats_url: str = "nats://127.0.0.1:4222") -> System:
    """A new, not yet started system. ``base_dir``: where temporary data directories go;
    ``redis_url``: the server to configure when ``redis-server`` is not on PATH;
    ``nats_url``: the NATS server."""
    if name.startswith("logstore-embedded-"):
        from bench.systems.logstore_embedded import LogstoreEmbedded

        return LogstoreEmbedded(name.rsplit("-", 1)[1], base_dir)
    if name.startswith("logstore-processes-"):
        from bench.systems.logstore_procs import LogstoreProcesses

        return LogstoreProcesses(name.rsplit("-", 1)[1], base_dir)
    if name.startswith("logstore-broker-"):
        from bench.systems.logstore_broker import LogstoreBroker

        return LogstoreBroker(name.removeprefix("logstore-broker-"), base_dir)
    if name.startswith("redis-"):
        from bench.systems.redis_streams import RedisStreams

        return RedisStreams(name.split("-", 1)[1], base_dir, fallback_url=redis_url)
    if name == "nats":
        from bench.systems.nats_jetstream import NatsJetStream

        return NatsJetStream(nats_url)
    raise ValueError(f"unknown system {name!r}; known: {', '.join(NAMES)}")
