"""Kafka's RangeAssignor, plus the member ordering and input checks all assignors share.

Range works per topic, independently: the members subscribed to the topic are put in Kafka's
member order (:func:`kafka_member_order`) and the topic's partitions are cut into contiguous
ranges, one per member; the first ``n % m`` members get one partition more. Members that share
several topics therefore get the same ranks in each (which co-partitioned joins rely on) and,
for the same reason, the first members of a topic get the extra partition of every topic.

This module imports nothing from :mod:`logstore.coordinator.assignors` at run time: that module
imports this one to build its registry, so a run-time import back would be circular.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from logstore.errors import InvalidArgumentError
from logstore.types import TopicPartition

if TYPE_CHECKING:
    from logstore.coordinator.assignors import Subscription


def kafka_member_order(
    member_ids: Iterable[str], subscriptions: Mapping[str, Subscription]
) -> list[str]:
    """Sort member ids the way Kafka's ``MemberInfo.compareTo`` does.

    Static members (with a ``group_instance_id``) come first, ordered by instance id, then
    dynamic members ordered by member id. A restarted static member gets a new member id but
    keeps its instance id, so its rank, and with it its range or round-robin share, survives
    the restart. Two members with the same instance id (only possible transiently while the
    coordinator fences the old one) fall back to member id so the order stays total.
    """

    def key(member_id: str) -> tuple[int, str, str]:
        instance_id = subscriptions[member_id].group_instance_id
        if instance_id is None:
            return (1, "", member_id)
        return (0, instance_id, member_id)

    return sorted(member_ids, key=key)


def partition_counts(partitions_per_topic: Mapping[str, int]) -> dict[str, int]:
    """The topics that have partitions, with their counts.

    Topics with 0 partitions are dropped (Kafka's AbstractPartitionAssignor does the same with
    topics whose metadata shows no partitions), so callers only need to check membership.
    Raises InvalidArgumentError for a count that is not a non-negative int: that is a bug in
    the caller, and assigning around it would hide it.
    """
    counts: dict[str, int] = {}
    for topic, count in partitions_per_topic.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidArgumentError(
                f"partition count of topic {topic!r} must be a non-negative int, got {count!r}"
            )
        if count > 0:
            counts[topic] = count
    return counts


class RangeAssignor:
    """Per-topic contiguous ranges over the topic's subscribers (eager protocol).

    Stateless; one instance may be used from any number of threads.
    """

    name = "range"
    # Equal to assignors.EAGER; spelled out because importing it here would be circular.
    rebalance_protocol = "eager"

    def assign(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
    ) -> dict[str, list[TopicPartition]]:
        """See :meth:`logstore.coordinator.assignors.PartitionAssignor.assign`.

        Every partition of a topic that has at least one subscriber is assigned, to exactly one
        subscriber; members subscribed to nothing that exists get an empty list.
        """
        counts = partition_counts(partitions_per_topic)
        subscribers: dict[str, list[str]] = {}
        for member_id, subscription in subscriptions.items():
            for topic in set(subscription.topics):
                if topic in counts:
                    subscribers.setdefault(topic, []).append(member_id)

        assignment: dict[str, list[TopicPartition]] = {m: [] for m in sorted(subscriptions)}
        for topic in sorted(subscribers):
            members = kafka_member_order(subscribers[topic], subscriptions)
            per_member, extra = divmod(counts[topic], len(members))
            for rank, member_id in enumerate(members):
                start = per_member * rank + min(rank, extra)
                length = per_member + (1 if rank < extra else 0)
                assignment[member_id].extend(
                    TopicPartition(topic, p) for p in range(start, start + length)
                )
        # Topics were visited in sorted order and ranges are ascending, so lists are sorted.
        return assignment
