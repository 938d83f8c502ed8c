"""Partition assignors of consumer groups (interface; implementations below).

An assignor turns the group's members (each with its subscription) and the partition counts of
the subscribed topics into one assignment per member. The group leader runs it during a
rebalance; every member must support the protocol the group chose.

* ``range`` (Kafka's RangeAssignor, eager): per topic, the sorted partitions are split into
  contiguous ranges over the members subscribed to that topic, sorted by member id.
* ``roundrobin`` (RoundRobinAssignor, eager): all subscribed partitions, sorted by topic and
  partition, dealt round-robin over the sorted members, skipping members not subscribed to the
  partition's topic.
* ``cooperative-sticky`` (CooperativeStickyAssignor, KIP-429): balanced and sticky (members
  keep the partitions they own when balance allows); a partition that must move from one
  member to another is left unassigned in this round, so its owner revokes it and rejoins, and
  the next rebalance hands it to its new member. No partition is ever assigned to a member while
  another member still owns it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from logstore.errors import InvalidArgumentError
from logstore.types import TopicPartition

EAGER = "eager"
COOPERATIVE = "cooperative"


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a member sends when it joins.

    ``owned_partitions``: what the member owns now (used by sticky/cooperative assignors).
    ``group_instance_id``: set for static members (KIP-345); assignors may sort by it so a
    restarted static member gets the same partitions. (Not part of the encoded subscription:
    the leader takes it from the member's JoinGroup.) ``rack_id``: the member's ``client.rack``.
    """

    topics: tuple[str, ...]
    owned_partitions: tuple[TopicPartition, ...] = ()
    generation: int = -1
    group_instance_id: str | None = None
    user_data: bytes = field(default=b"")
    rack_id: str | None = None


class PartitionAssignor(Protocol):
    """Computes a group's assignment. Implementations are stateless and thread-safe."""

    name: str
    rebalance_protocol: str  # EAGER or COOPERATIVE

    def assign(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
    ) -> dict[str, list[TopicPartition]]:
        """Return, for every member id in ``subscriptions``, its partitions (sorted).

        ``partitions_per_topic`` holds the partition count of every topic some member
        subscribes to (topics that do not exist are absent). Every partition of a subscribed
        topic is assigned to at most one member, and only to a member subscribed to its topic.
        """
        ...


# The implementations live in one module each; they import nothing from this module at run
# time, so importing them here, after the interface, is not circular.
from logstore.coordinator.range_assignor import RangeAssignor  # noqa: E402 - see above
from logstore.coordinator.roundrobin_assignor import RoundRobinAssignor  # noqa: E402 - see above
from logstore.coordinator.sticky_assignor import CooperativeStickyAssignor  # noqa: E402 - see above

ASSIGNORS: dict[str, PartitionAssignor] = {
    assignor.name: assignor
    for assignor in (RangeAssignor(), RoundRobinAssignor(), CooperativeStickyAssignor())
}
"""Every built-in assignor by its ``partition_assignment_strategy`` name (Kafka's names).

The instances are stateless and shared; treat the dict as read-only.
"""


def get_assignor(name: str) -> PartitionAssignor:
    """The assignor called ``name``; InvalidArgumentError (listing the known names) if none is."""
    assignor = ASSIGNORS.get(name) if isinstance(name, str) else None
    if assignor is None:
        raise InvalidArgumentError(
            f"unknown partition assignment strategy {name!r}; "
            f"expected one of: {', '.join(sorted(ASSIGNORS))}"
        )
    return assignor
