"""Consumer-group administration: list, describe, lag, offset changes and deletion.

Offset changes and deletion are refused while the group has live members (Kafka requires an
empty group too): a running member would overwrite the change with its next commit. Members
whose session expired do not count (they are expired first).

Reset plans (``plan_offset_reset``) compute target offsets per partition the way
kafka-consumer-groups does: to the earliest or latest offset, to an offset, to the first offset
at or after a time, or shifted from the committed offset; targets are clamped to
[log start offset, log end offset].

Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from logstore.backends.group_records import CommittedOffset
from logstore.clock import Clock
from logstore.coordinator.consumer_protocol import decode_assignment
from logstore.coordinator.group_coordinator import GroupCoordinator
from logstore.errors import InconsistentGroupProtocolError, InvalidArgumentError
from logstore.log.partition_log import PartitionLog
from logstore.types import (
    GroupDescription,
    GroupListing,
    MemberDescription,
    OffsetAndMetadata,
    PartitionLag,
    TopicPartition,
)

RESET_MODES = ("earliest", "latest", "offset", "datetime", "shift")


class GroupAdmin:
    """Group operations for the embedded API and the CLI."""

    def __init__(
        self,
        coordinator: GroupCoordinator,
        clock: Clock,
        partition_log: Callable[[str, int], PartitionLog],
        partition_count: Callable[[str], int],
    ) -> None:
        self._coordinator = coordinator
        self._clock = clock
        self._partition_log = partition_log
        self._partition_count = partition_count

    def list_groups(self) -> list[GroupListing]:
        listings = []
        for group in self._coordinator.list_groups():
            snapshot = self._coordinator.describe_group(group.group_id)
            current = snapshot.group or group
            listings.append(GroupListing(current.group_id, current.state,
                                         current.protocol_type, len(snapshot.members)))
        return listings

    def describe_group(self, group_id: str) -> GroupDescription:
        """Raises GroupIdNotFoundError."""
        snapshot = self._coordinator.describe_group(group_id)
        group = snapshot.group
        if group is None:  # deleted between the two reads
            return GroupDescription(group_id, "Dead", 0, "", None, None, ())
        members = []
        for member in snapshot.members:
            assignment: frozenset[TopicPartition] = frozenset()
            if member.assignment and member.join_generation == group.generation:
                try:
                    assignment = frozenset(decode_assignment(member.assignment))
                except InconsistentGroupProtocolError:
                    assignment = frozenset()  # another protocol's bytes: nothing to show
            members.append(MemberDescription(member.member_id, member.group_instance_id,
                                             member.client_id, assignment))
        return GroupDescription(group.group_id, group.state, group.generation,
                                group.protocol_type, group.protocol, group.leader_id,
                                tuple(members))

    def group_lag(self, group_id: str) -> list[PartitionLag]:
        """Per partition that has a committed offset or an owner: committed offset, log end
        offset and lag, sorted by topic and partition."""
        description = self.describe_group(group_id)
        owners = {tp: m.member_id for m in description.members for tp in m.assignment}
        committed = self._coordinator.fetch_offsets(group_id)
        result = []
        for tp in sorted(set(committed) | set(owners)):
            try:
                end = self._partition_log(tp.topic, tp.partition).high_watermark
            except Exception:  # noqa: BLE001, S112 - the topic was deleted: report nothing for it
                continue
            offset = committed[tp].offset if tp in committed else None
            result.append(PartitionLag(tp.topic, tp.partition, offset, end,
                                       None if offset is None else max(0, end - offset),
                                       owners.get(tp)))
        return result

    def alter_group_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, OffsetAndMetadata | int]
    ) -> None:
        """Set committed offsets; raises GroupNotEmptyError while the group has live members."""
        now = self._clock.time_ms()
        stored = {}
        for tp, value in offsets.items():
            tp = TopicPartition(*tp)
            self._partition_log(tp.topic, tp.partition)  # raises for unknown partitions
            target = value if isinstance(value, OffsetAndMetadata) else OffsetAndMetadata(value)
            if isinstance(target.offset, bool) or not isinstance(target.offset, int) or (
                target.offset < 0
            ):
                raise InvalidArgumentError(f"offset for {tp} must be a non-negative int")
            stored[tp] = CommittedOffset(target.offset, target.metadata, target.leader_epoch, now)
        self._coordinator.alter_offsets(group_id, stored)

    def delete_group(self, group_id: str) -> None:
        """Delete the group and its offsets; refused while it has live members."""
        self._coordinator.delete_group(group_id)

    def plan_offset_reset(
        self,
        group_id: str,
        topic: str,
        *,
        partitions: Iterable[int] | None = None,
        mode: str,
        value: int = 0,
    ) -> dict[TopicPartition, int]:
        """Target offsets for a reset (nothing is written). ``value`` is the offset for
        ``offset``, the time in ms for ``datetime`` and the shift for ``shift``."""
        if mode not in RESET_MODES:
            raise InvalidArgumentError(f"reset mode must be one of {', '.join(RESET_MODES)}")
        chosen = list(range(self._partition_count(topic))) if partitions is None else list(
            partitions)
        committed = self._coordinator.fetch_offsets(group_id)
        plan = {}
        for partition in chosen:
            log = self._partition_log(topic, partition)
            start, end = log.log_start_offset, log.high_watermark
            tp = TopicPartition(topic, partition)
            if mode == "earliest":
                target = start
            elif mode == "latest":
                target = end
            elif mode == "offset":
                target = value
            elif mode == "datetime":
                found = log.offset_for_timestamp(value)
                target = end if found is None else found.offset
            else:
                base = committed[tp].offset if tp in committed else start
                target = base + value
            plan[tp] = min(max(target, start), end)
        return plan
