"""Kafka's RoundRobinAssignor.

All partitions of all subscribed topics, sorted by (topic, partition), are dealt one at a time
to the members in Kafka's member order (:func:`kafka_member_order`), cycling; a member not
subscribed to the partition's topic is skipped and keeps its turn for the next partition it
can take. With identical subscriptions the loads differ by at most one; with different
subscriptions they may not (Kafka documents the same).

This module imports nothing from :mod:`logstore.coordinator.assignors` at run time: that module
imports this one to build its registry, so a run-time import back would be circular.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from logstore.coordinator.range_assignor import kafka_member_order, partition_counts
from logstore.types import TopicPartition

if TYPE_CHECKING:
    from logstore.coordinator.assignors import Subscription


class RoundRobinAssignor:
    """Deals every subscribed partition round-robin over the members (eager protocol).

    Stateless; one instance may be used from any number of threads.
    """

    name = "roundrobin"
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
        topics_of = {m: frozenset(s.topics) & counts.keys() for m, s in subscriptions.items()}
        subscribed_topics = sorted(frozenset().union(*topics_of.values()))
        members = kafka_member_order(subscriptions, subscriptions)

        assignment: dict[str, list[TopicPartition]] = {m: [] for m in sorted(subscriptions)}
        turn = 0
        for topic in subscribed_topics:
            for partition in range(counts[topic]):
                # Terminates: the topic is in subscribed_topics, so some member takes it.
                while topic not in topics_of[members[turn]]:
                    turn = (turn + 1) % len(members)
                assignment[members[turn]].append(TopicPartition(topic, partition))
                turn = (turn + 1) % len(members)
        # Partitions were dealt in sorted order, so every member's list is sorted.
        return assignment
