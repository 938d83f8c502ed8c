"""Request frames to fuzz the broker with, and their mutations (``bench/fuzz_broker.py`` and
``tests/broker/test_fuzz.py``).

Seeds are real request frames of two kinds:

* built with kio for every API and version a broker serves (its dispatcher's table), with values
  a client would send (the fuzz topic, partition 0, small waits, a real record batch); admin
  requests that would change the fuzz topic are aimed elsewhere or ``validate_only``;
* captured from confluent-kafka and kafka-python talking to a broker through a recording TCP
  proxy (:func:`capture_client_frames`): whatever those clients send, including APIs the broker
  does not serve yet.

A frame here is the payload after the 4-byte size; :func:`mutate` returns the bytes to send,
size included (mostly recomputed, sometimes set to a hostile value).
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import socket
import struct
import threading
import time
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from logstore.protocol.apis import VersionRange
from logstore.protocol.codec import encode_request, request_type
from logstore.records.builder import encode_batch

FUZZ_TOPIC = "fuzz-topic"
FUZZ_GROUP = "fuzz-group"
#: A topic that does not exist: what DeleteTopics and similar seeds name.
ABSENT_TOPIC = "fuzz-absent"
_SIZE = struct.Struct(">i")


def request_frame(api_key: int, version: int, correlation_id: int, body: Any,
                  *, client_id: str | None = "fuzz") -> bytes:
    """A request frame's payload (header and body, without the size)."""
    return encode_request(api_key, version, correlation_id, body, client_id=client_id)


# --- seeds built with kio ------------------------------------------------------------------

_INT_VALUES: Mapping[str, int] = {
    "acks": -1, "replica_id": -1, "broker_id": -1, "current_leader_epoch": -1,
    "leader_epoch": 0, "producer_id": -1, "producer_epoch": -1, "session_epoch": -1,
    "log_start_offset": -1, "timestamp": -1, "num_partitions": 1, "replication_factor": 1,
    "count": 2, "resource_type": 2, "max_bytes": 1 << 20, "partition_max_bytes": 1 << 20,
    "min_bytes": 1, "key_type": 0, "config_operation": 0, "offset": 0, "fetch_offset": 0,
    "isolation_level": 0, "include_cluster_authorized_operations": 0,
}
_TIMEDELTA_MS: Mapping[str, int] = {"max_wait": 10, "transaction_timeout": 60_000}
_STR_VALUES: Mapping[str, str] = {
    "key": FUZZ_GROUP, "group_id": FUZZ_GROUP, "rack_id": "", "client_software_name": "fuzz",
    "client_software_version": "1", "resource_name": FUZZ_TOPIC, "value": "3600000",
}


def build_request(api_key: int, version: int, *, topic: str = FUZZ_TOPIC) -> Any:
    """A request body a client could send: every field filled from its name and type."""
    cls = request_type(api_key, version)
    return _entity(cls, topic, ())


def _entity(cls: type[Any], topic: str, path: tuple[str, ...]) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        values[f.name] = _value(f.type, f.name, topic, (*path, cls.__name__))
    # Admin requests must not change the fuzz topic: create and delete elsewhere, or validate.
    if "validate_only" in values:
        values["validate_only"] = True
    if cls.__name__ in ("DeleteTopicState", "DeletableTopicState"):
        values["name"] = ABSENT_TOPIC
    return cls(**values)


def _value(tp: Any, name: str, topic: str, path: tuple[str, ...]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if name in ("transactional_id", "rack", "cluster_id"):
            return None
        return _value(options[0], name, topic, path)
    if origin is tuple:
        element = typing.get_args(tp)[0]
        if name in ("forgotten_topics_data", "assignments", "configs", "replica_assignment"):
            return ()
        return (_value(element, name, topic, path),)
    if dataclasses.is_dataclass(tp):
        return _entity(tp, topic, path)
    if tp is bool or (isinstance(tp, type) and issubclass(tp, bool)):
        return name == "allow_auto_topic_creation"
    if isinstance(tp, type) and issubclass(tp, datetime.timedelta):
        return tp.parse(datetime.timedelta(milliseconds=_TIMEDELTA_MS.get(name, 1000)))
    if isinstance(tp, type) and tp.__name__ == "Records":
        return encode_batch([(0, b"key", b"value", ())])
    if isinstance(tp, type) and issubclass(tp, bytes):
        return tp(b"")
    if isinstance(tp, type) and issubclass(tp, str):
        text = _STR_VALUES.get(name, topic if name in ("name", "topic") else "fuzz")
        return text if tp is str else tp(text)
    if isinstance(tp, type) and issubclass(tp, float):
        return tp(0.0)
    if isinstance(tp, type) and issubclass(tp, int):
        return tp(_INT_VALUES.get(name, 0))
    if tp is uuid.UUID:
        return uuid.UUID(int=0)
    raise TypeError(f"no seed value for {name}: {tp!r} (in {'.'.join(path)})")


def built_seeds(supported: Mapping[int, VersionRange], *,
                topic: str = FUZZ_TOPIC) -> list[bytes]:
    """One frame for every served API and version (``Dispatcher.supported()``)."""
    frames = []
    for api_key, versions in sorted(supported.items()):
        for version in range(versions.min_version, versions.max_version + 1):
            body = build_request(api_key, version, topic=topic)
            frames.append(request_frame(api_key, version, 1000 + version, body))
    return frames


# --- seeds captured from real clients --------------------------------------------------------

class RecordingProxy:
    """A TCP proxy in front of a broker that keeps every request frame clients send through it.

    Bind it first (``port``), start the broker advertising that port (so clients come back
    through the proxy after Metadata), then :meth:`start` with the broker's address."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.frames: list[bytes] = []
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._target: tuple[str, int] | None = None

    def start(self, target: tuple[str, int]) -> None:
        self._target = target
        threading.Thread(target=self._accept, name="fuzz-proxy", daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        assert self._target is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        buffer = bytearray()
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                if record:
                    buffer += data
                    while len(buffer) >= 4:
                        (size,) = _SIZE.unpack_from(buffer, 0)
                        if size < 0 or len(buffer) < 4 + size:
                            break
                        with self._lock:
                            self.frames.append(bytes(buffer[4:4 + size]))
                        del buffer[:4 + size]
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def drive_clients(bootstrap: str, *, topic: str = FUZZ_TOPIC,
                  seconds_per_client: float = 3.0) -> None:
    """Drive confluent-kafka and kafka-python against ``bootstrap`` (a :class:`RecordingProxy`
    whose broker advertises it) for a few seconds each: produce (plain and idempotent, with
    compression), consume by assignment and in a group, admin calls. Errors are expected (APIs a
    broker does not serve yet); only the frames matter."""
    for session in (_confluent_session, _kafka_python_session):
        try:
            session(bootstrap, topic, seconds_per_client)
        except Exception:  # noqa: BLE001, S112 - a client giving up is fine: its frames were sent
            continue


def _confluent_session(bootstrap: str, topic: str, seconds: float) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    common = {"bootstrap.servers": bootstrap, "log_level": 0}
    for extra in ({"acks": "all", "enable.idempotence": True, "compression.type": "lz4"},
                  {"acks": 1, "compression.type": "zstd", "linger.ms": 0}):
        producer = Producer({**common, **extra})
        for i in range(3):
            producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"x")])
        producer.flush(seconds)
    consumer = Consumer({**common, "group.id": FUZZ_GROUP, "enable.auto.commit": False,
                         "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(topic, 0, 0)])
    _poll_for(consumer, seconds / 2)
    consumer.close()
    grouped = Consumer({**common, "group.id": FUZZ_GROUP, "session.timeout.ms": 6000,
                        "auto.offset.reset": "earliest"})
    grouped.subscribe([topic])
    _poll_for(grouped, seconds)
    grouped.close()
    admin = AdminClient(common)
    futures = [*admin.create_topics([NewTopic(ABSENT_TOPIC, 1)], validate_only=True,
                                    request_timeout=seconds).values(),
               *admin.describe_configs([ConfigResource("topic", topic)],
                                       request_timeout=seconds).values()]
    for future in futures:
        try:
            future.result(timeout=seconds)
        except Exception:  # noqa: BLE001, S112 - refused or unsupported: the frame was sent
            continue


def _poll_for(consumer: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        consumer.poll(0.1)


def _kafka_python_session(bootstrap: str, topic: str, seconds: float) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    timeout_ms = int(seconds * 1000)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=timeout_ms,
                             max_block_ms=timeout_ms)
    for i in range(3):
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i)
    producer.flush(timeout=seconds)
    producer.close(timeout=seconds)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=max(timeout_ms, 1000),
                             consumer_timeout_ms=timeout_ms, fetch_max_wait_ms=10,
                             enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    consumer.poll(timeout_ms=timeout_ms // 2, max_records=10)
    consumer.close()


# --- mutations -------------------------------------------------------------------------------

_HOSTILE_INT32 = (0x7FFFFFFF, -1, -0x80000000, 0x10000000, 0xFFFF, 0x7FFF)
_HOSTILE_INT16 = (0x7FFF, -1, -0x8000, 0x1000)
_HOSTILE_BYTES = (0x00, 0xFF, 0x7F, 0x80, 0x01)


def _flip_bits(frame: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(frame) * 8)
        frame[position // 8] ^= 1 << (position % 8)


def _set_bytes(frame: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 4)):
        frame[rng.randrange(len(frame))] = rng.choice(_HOSTILE_BYTES)


def _set_int32(frame: bytearray, rng: random.Random) -> None:
    """A length, count or size field (wherever it is) set to a huge or negative value."""
    if len(frame) >= 4:
        struct.pack_into(">i", frame, rng.randrange(len(frame) - 3),
                         _wrap32(rng.choice(_HOSTILE_INT32)))


def _set_int16(frame: bytearray, rng: random.Random) -> None:
    if len(frame) >= 2:
        struct.pack_into(">h", frame, rng.randrange(len(frame) - 1), rng.choice(_HOSTILE_INT16))


def _set_varint(frame: bytearray, rng: random.Random) -> None:
    """A compact length (unsigned varint) made huge: 0xFF bytes then a terminator."""
    position = rng.randrange(len(frame))
    run = rng.randint(1, 6)
    frame[position:position + run] = b"\xff" * (run - 1) + b"\x7f"


def _truncate(frame: bytearray, rng: random.Random) -> None:
    del frame[rng.randrange(len(frame)):]


def _extend(frame: bytearray, rng: random.Random) -> None:
    frame += rng.randbytes(rng.randint(1, 64))


def _splice(frame: bytearray, rng: random.Random) -> None:
    """Bytes removed from or inserted in the middle (shifts every later field)."""
    position = rng.randrange(len(frame))
    if rng.random() < 0.5:
        del frame[position:position + rng.randint(1, 16)]
    else:
        frame[position:position] = rng.randbytes(rng.randint(1, 16))


def _wrap32(value: int) -> int:
    return ((value + 0x80000000) & 0xFFFFFFFF) - 0x80000000


MUTATORS: tuple[Callable[[bytearray, random.Random], None], ...] = (
    _flip_bits, _flip_bits, _set_bytes, _set_int32, _set_int16, _set_varint, _truncate, _extend,
    _splice)


def mutate(frame: bytes, rng: random.Random) -> bytes:
    """``frame`` with one to three mutations, as bytes to send (size included).

    The size is the payload's own nine times in ten; otherwise hostile: negative, over any
    limit, or a lie by a few bytes (the broker then waits for the rest, or reads the next frame
    from the middle of this one)."""
    payload = bytearray(frame)
    for _ in range(rng.randint(1, 3)):
        if not payload:
            break
        rng.choice(MUTATORS)(payload, rng)
    size = len(payload)
    roll = rng.random()
    if roll < 0.04:
        size = rng.choice((-1, -0x80000000, 0x7FFFFFFF, 100 * 1024 * 1024 + 1))
    elif roll < 0.07:
        size = max(0, size - rng.randint(1, 8))
    elif roll < 0.10:
        size += rng.randint(1, 8)
    return _SIZE.pack(size) + bytes(payload)


def frames_forever(seeds: list[bytes], rng: random.Random) -> Iterator[bytes]:
    """Mutated frames of random seeds, without end."""
    while True:
        yield mutate(rng.choice(seeds), rng)
