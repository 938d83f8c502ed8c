"""Kafka's binary ConsumerProtocol (subscriptions and assignments of consumer groups), checked
byte for byte against kafka-python's encoder (generated from Kafka's JSON schemas) and
aiokafka's decoder; legacy JSON values still read; untrusted bytes fail cleanly."""

from __future__ import annotations

import struct

import pytest
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from hypothesis import given
from hypothesis import strategies as st
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolAssignment as KpAssignment,
)
from kafka.protocol.consumer.metadata import (
    ConsumerProtocolSubscription as KpSubscription,
)

from logstore.coordinator.assignors import Subscription
from logstore.coordinator.consumer_protocol import (
    binary_assignment,
    binary_subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
    same_subscription,
)
from logstore.errors import InconsistentGroupProtocolError
from logstore.types import TopicPartition

A0, A2, B1 = TopicPartition("a", 0), TopicPartition("a", 2), TopicPartition("b", 1)


def kafka_subscription(version: int, **fields: object) -> bytes:
    values = {"topics": ["a", "b"], "user_data": b"u", "owned_partitions": [
        KpSubscription.TopicPartition(topic="a", partitions=[0, 2]),
        KpSubscription.TopicPartition(topic="b", partitions=[1])],
        "generation_id": 5, "rack_id": "r1", **fields}
    encoded: bytes = KpSubscription(version=version, **values).encode()
    return encoded


def test_subscriptions_are_kafkas_bytes_in_version_3() -> None:
    subscription = Subscription(topics=("b", "a"), owned_partitions=(B1, A2, A0), generation=5,
                                user_data=b"u", rack_id="r1")
    assert encode_subscription(subscription) == kafka_subscription(3)
    assert decode_subscription(encode_subscription(subscription)) == Subscription(
        topics=("a", "b"), owned_partitions=(A0, A2, B1), generation=5, user_data=b"u",
        rack_id="r1")


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_every_subscription_version_is_read(version: int) -> None:
    decoded = decode_subscription(kafka_subscription(version))
    assert decoded.topics == ("a", "b") and decoded.user_data == b"u"
    assert decoded.owned_partitions == ((A0, A2, B1) if version >= 1 else ())
    assert decoded.generation == (5 if version >= 2 else -1)
    assert decoded.rack_id == ("r1" if version >= 3 else None)


def test_a_later_version_is_read_as_version_3_ignoring_what_follows() -> None:
    later = struct.pack(">h", 9) + kafka_subscription(3)[2:] + b"new fields"
    assert decode_subscription(later) == decode_subscription(kafka_subscription(3))
    assignment = struct.pack(">h", 4) + encode_assignment([A0])[2:] + b"\x00\x00"
    assert decode_assignment(assignment) == {A0}


def test_assignments_are_kafkas_bytes_and_other_clients_read_them() -> None:
    encoded = encode_assignment([A2, B1, A0])
    expected = KpAssignment(version=3, assigned_partitions=[
        KpAssignment.TopicPartition(topic="a", partitions=[0, 2]),
        KpAssignment.TopicPartition(topic="b", partitions=[1])], user_data=b"").encode()
    assert encoded == expected
    assert decode_assignment(encoded) == {A0, A2, B1}
    assert sorted(ConsumerProtocolMemberAssignment.decode(encoded).partitions()) == [
        ("a", 0), ("a", 2), ("b", 1)]
    assert ConsumerProtocolMemberMetadata.decode(
        encode_subscription(Subscription(topics=("a",)))).subscription == ["a"]
    assert decode_assignment(b"") == set()  # a member the leader gave nothing


def test_legacy_json_values_are_read_and_served_in_binary() -> None:
    subscription = (b'{"v":1,"topics":["a"],"owned":[["a",0]],"generation":3,'
                    b'"instance":"w-1"}')
    assignment = b'{"v":1,"partitions":[["a",0],["b",1]]}'
    decoded = decode_subscription(subscription)
    assert (decoded.topics, decoded.owned_partitions, decoded.generation) == (("a",), (A0,), 3)
    assert decode_assignment(assignment) == {A0, B1}
    assert KpSubscription.decode(binary_subscription(subscription)).topics == ["a"]
    assert decode_assignment(binary_assignment(assignment)) == {A0, B1}
    binary = encode_assignment([A0])
    assert binary_assignment(binary) is binary
    # A member restarted on the new code is the same subscription as its JSON row.
    assert same_subscription((("range", subscription),),
                             (("range", encode_subscription(Subscription(topics=("a",)))),))


@pytest.mark.parametrize("data", [
    b"\x00",                                          # no version
    b"\xff\xff\x00\x00\x00\x00",                      # negative version
    b"\x00\x00\x7f\xff\xff\xff",                      # 2**31 topics in 6 bytes
    b"\x00\x00\x00\x00\x00\x01\x00\x05ab",            # a truncated topic name
    b"\x00\x00\x00\x00\x00\x01\x00\x02\xff\xfe\x00\x00\x00\x00",  # not UTF-8
    (b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00"
     b"\x00\x00\x00\x01\x00\x01a\x00\x00\x00\x01\xff\xff\xff\xff"),  # partition -1
])
def test_malformed_subscriptions_are_refused(data: bytes) -> None:
    with pytest.raises(InconsistentGroupProtocolError):
        decode_subscription(data)


@given(st.binary(max_size=64))
def test_untrusted_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    for decode in (decode_subscription, decode_assignment):
        try:
            decode(data)
        except InconsistentGroupProtocolError:
            pass
