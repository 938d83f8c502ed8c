"""The bytes a consumer group's members exchange through the coordinator (protocol type
``consumer``): subscriptions, sent when joining, and assignments, handed out by the leader.

Format (JSON, UTF-8; version 1)::

    subscription = {"v": 1, "topics": ["orders", ...],
                    "owned": [["orders", 0], ...],        # partitions the member owns now
                    "generation": 7,                      # the generation it owned them in
                    "instance": "worker-1" | null}        # group.instance.id (static member)
    assignment   = {"v": 1, "partitions": [["orders", 0], ...]}

These are opaque to the metadata store. (Kafka's clients encode the same information in the
binary ConsumerProtocol format; when the Kafka-protocol broker arrives, members speaking it will
need that encoding too.) Decoding treats the bytes as untrusted: anything malformed raises
:class:`InconsistentGroupProtocolError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from logstore.coordinator.assignors import Subscription
from logstore.errors import InconsistentGroupProtocolError
from logstore.types import TopicPartition

VERSION = 1


def encode_subscription(subscription: Subscription) -> bytes:
    return json.dumps({
        "v": VERSION,
        "topics": sorted(subscription.topics),
        "owned": sorted([tp.topic, tp.partition] for tp in subscription.owned_partitions),
        "generation": subscription.generation,
        "instance": subscription.group_instance_id,
    }, separators=(",", ":")).encode()


def decode_subscription(data: bytes) -> Subscription:
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


def encode_assignment(partitions: Iterable[TopicPartition]) -> bytes:
    return json.dumps({
        "v": VERSION, "partitions": sorted([tp.topic, tp.partition] for tp in partitions),
    }, separators=(",", ":")).encode()


def decode_assignment(data: bytes) -> set[TopicPartition]:
    if not data:
        return set()  # a member the leader left without partitions
    return set(_partitions(_load(data, "assignment").get("partitions", [])))


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InconsistentGroupProtocolError(f"undecodable consumer {what}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
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
            if decode_subscription(a).topics != decode_subscription(b).topics:
                return False
        except InconsistentGroupProtocolError:
            if a != b:
                return False
    return True
