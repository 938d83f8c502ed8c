"""The bytes a consumer group's members exchange through the coordinator (protocol type
``consumer``): subscriptions, sent when joining, and assignments, handed out by the leader.

The format is Kafka's binary ConsumerProtocol, so embedded members and members speaking the
Kafka protocol through the broker (confluent-kafka, kafka-python, aiokafka, Java) can be
members of one group and read each other's subscriptions and assignments. Big-endian, strings
with an int16 length, arrays with an int32 count, bytes with an int32 length (-1: null)::

    ConsumerProtocolSubscription (versions 0-3)
        version          int16
        topics           [string]
        user_data        bytes (nullable)
        owned_partitions [topic string, partitions [int32]]     v1+
        generation_id    int32                                  v2+ (-1: unknown)
        rack_id          string (nullable)                      v3+
    ConsumerProtocolAssignment (versions 0-3; the same fields in every version)
        version          int16
        assigned         [topic string, partitions [int32]]
        user_data        bytes (nullable)

This module writes version 3 of both (what Kafka 3's clients write; every field the embedded
member has). As Kafka does, it reads any version: a version above 3 is read as version 3 and
whatever follows is ignored, because later versions may only append fields.

Upgrades: before the broker existed, embedded members wrote JSON (``{"v": 1, ...}``). A group
running while its processes are upgraded may still hold such rows, so the decoders read both
forms and everything is written in binary; :func:`binary_subscription` and
:func:`binary_assignment` turn a stored JSON value into binary for members speaking the Kafka
protocol. (A binary value cannot be mistaken for JSON: it would need version 0x7B22.) A
member still running the old code cannot read binary subscriptions: if it leads a rebalance,
its poll raises InconsistentGroupProtocolError until it is restarted on the new code.

Decoding treats the bytes as untrusted: anything malformed raises
:class:`InconsistentGroupProtocolError`. Pure functions: thread-safe.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Any

from logstore.coordinator.assignors import Subscription
from logstore.errors import InconsistentGroupProtocolError
from logstore.types import TopicPartition

#: The version of ConsumerProtocolSubscription / ConsumerProtocolAssignment written.
VERSION = 3
_LEGACY_JSON_VERSION = 1
_LEGACY_PREFIX = b'{"v":'

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


# --- encoding ------------------------------------------------------------------------------------


def encode_subscription(subscription: Subscription) -> bytes:
    """A ConsumerProtocolSubscription v3. ``group_instance_id`` is not part of the format (the
    coordinator knows each member's instance id from its JoinGroup)."""
    out = bytearray(_I16.pack(VERSION))
    topics = sorted(subscription.topics)
    out += _I32.pack(len(topics))
    for topic in topics:
        _put_string(out, topic)
    _put_bytes(out, subscription.user_data)
    _put_partitions(out, subscription.owned_partitions)
    out += _I32.pack(subscription.generation)
    _put_nullable_string(out, subscription.rack_id)
    return bytes(out)


def encode_assignment(partitions: Iterable[TopicPartition], *, user_data: bytes = b"") -> bytes:
    """A ConsumerProtocolAssignment v3."""
    out = bytearray(_I16.pack(VERSION))
    _put_partitions(out, partitions)
    _put_bytes(out, user_data)
    return bytes(out)


def _put_string(out: bytearray, value: str) -> None:
    data = value.encode()
    if len(data) > 0x7FFF:
        raise InconsistentGroupProtocolError(f"string of {len(data)} bytes is too long")
    out += _I16.pack(len(data))
    out += data


def _put_nullable_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += _I16.pack(-1)
    else:
        _put_string(out, value)


def _put_bytes(out: bytearray, value: bytes) -> None:
    # Empty rather than null: Kafka's own clients write empty user data this way, and some
    # old decoders cannot read a null.
    out += _I32.pack(len(value))
    out += value


def _put_partitions(out: bytearray, partitions: Iterable[TopicPartition]) -> None:
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(set(partitions)):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    out += _I32.pack(len(by_topic))
    for topic, numbers in by_topic.items():
        _put_string(out, topic)
        out += _I32.pack(len(numbers))
        for number in numbers:
            out += _I32.pack(number)


# --- decoding ------------------------------------------------------------------------------------


class _Reader:
    """Reads the fields of one message, checking every length against what is left."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    def fail(self, reason: str) -> InconsistentGroupProtocolError:
        return InconsistentGroupProtocolError(f"malformed consumer {self._what}: {reason}")

    def _take(self, size: int) -> memoryview:
        end = self._pos + size
        if size < 0 or end > len(self._data):
            raise self.fail("truncated")
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def int16(self) -> int:
        value: int = _I16.unpack(self._take(2))[0]
        return value

    def int32(self) -> int:
        value: int = _I32.unpack(self._take(4))[0]
        return value

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise self.fail("null string")
        return value

    def nullable_string(self) -> str | None:
        size = self.int16()
        if size == -1:
            return None
        if size < 0:
            raise self.fail(f"string length {size}")
        try:
            return str(self._take(size), "utf-8")
        except UnicodeDecodeError:
            raise self.fail("string is not UTF-8") from None

    def nullable_bytes(self) -> bytes:
        size = self.int32()
        if size == -1:
            return b""
        return bytes(self._take(size))

    def count(self, min_item_bytes: int) -> int:
        """An array's element count, refused if the bytes left cannot hold that many."""
        size = self.int32()
        if size < 0 or size * min_item_bytes > len(self._data) - self._pos:
            raise self.fail(f"array of {size} elements")
        return size

    def partitions(self) -> list[TopicPartition]:
        result = []
        for _ in range(self.count(6)):
            topic = self.string()
            for _ in range(self.count(4)):
                number = self.int32()
                if number < 0:
                    raise self.fail(f"partition {number}")
                result.append(TopicPartition(topic, number))
        return result


def decode_subscription(data: bytes) -> Subscription:
    """A subscription in any ConsumerProtocolSubscription version (or the legacy JSON)."""
    if _is_legacy(data):
        return _legacy_subscription(data)
    reader = _Reader(data, "subscription")
    version = reader.int16()
    if version < 0:
        raise reader.fail(f"version {version}")
    topics = tuple(reader.string() for _ in range(reader.count(2)))
    user_data = reader.nullable_bytes()
    owned: list[TopicPartition] = reader.partitions() if version >= 1 else []
    generation = reader.int32() if version >= 2 else -1
    rack_id = reader.nullable_string() if version >= 3 else None
    return Subscription(topics=topics, owned_partitions=tuple(owned), generation=generation,
                        user_data=user_data, rack_id=rack_id)


def decode_assignment(data: bytes) -> set[TopicPartition]:
    """The partitions of an assignment in any ConsumerProtocolAssignment version (or the
    legacy JSON); empty bytes (a member the leader left without partitions) are none."""
    if not data:
        return set()
    if _is_legacy(data):
        return set(_partitions(_load(data, "assignment").get("partitions", [])))
    reader = _Reader(data, "assignment")
    version = reader.int16()
    if version < 0:
        raise reader.fail(f"version {version}")
    partitions = set(reader.partitions())
    reader.nullable_bytes()  # user data: no built-in assignor uses it
    return partitions


def binary_subscription(data: bytes) -> bytes:
    """``data`` itself, or, for a legacy JSON subscription, the same in binary (for members
    speaking the Kafka protocol, which read only binary)."""
    if not _is_legacy(data):
        return data
    try:
        return encode_subscription(_legacy_subscription(data))
    except InconsistentGroupProtocolError:
        return data


def binary_assignment(data: bytes) -> bytes:
    """``data`` itself, or, for a legacy JSON assignment, the same in binary."""
    if not _is_legacy(data):
        return data
    try:
        return encode_assignment(decode_assignment(data))
    except InconsistentGroupProtocolError:
        return data


# --- the legacy JSON form (read only) ------------------------------------------------------------


def _is_legacy(data: bytes) -> bool:
    return data[:len(_LEGACY_PREFIX)] == _LEGACY_PREFIX


def _legacy_subscription(data: bytes) -> Subscription:
    doc = _load(data, "subscription")
    topics = doc.get("topics")
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise InconsistentGroupProtocolError("subscription topics must be a list of strings")
    generation = doc.get("generation", -1)
    instance = doc.get("instance")
    if not isinstance(generation, int) or not (instance is None or isinstance(instance, str)):
        raise InconsistentGroupProtocolError("malformed subscription")
    return Subscription(
        topics=tuple(topics),
        owned_partitions=tuple(_partitions(doc.get("owned", []))),
        generation=generation,
        group_instance_id=instance,
    )


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InconsistentGroupProtocolError(f"undecodable consumer {what}") from None
    if not isinstance(doc, dict) or doc.get("v") != _LEGACY_JSON_VERSION:
        raise InconsistentGroupProtocolError(f"unsupported consumer {what} version")
    return doc


def _partitions(items: Any) -> list[TopicPartition]:
    if not isinstance(items, list):
        raise InconsistentGroupProtocolError("partitions must be a list")
    result = []
    for item in items:
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], int) or isinstance(item[1], bool) or item[1] < 0):
            raise InconsistentGroupProtocolError(f"malformed partition {item!r}")
        result.append(TopicPartition(item[0], item[1]))
    return result


# --- comparing -----------------------------------------------------------------------------------


def same_subscription(
    old: tuple[tuple[str, bytes], ...], new: tuple[tuple[str, bytes], ...]
) -> bool:
    """Whether two members' protocols subscribe to the same topics with the same assignors.

    Owned partitions and generations are ignored: they change with every rebalance, and a
    restarted static member cannot know them. Undecodable metadata compares by bytes.
    """
    if [name for name, _ in old] != [name for name, _ in new]:
        return False
    for (_, a), (_, b) in zip(old, new, strict=True):
        try:
            if sorted(decode_subscription(a).topics) != sorted(decode_subscription(b).topics):
                return False
        except InconsistentGroupProtocolError:
            if a != b:
                return False
    return True
