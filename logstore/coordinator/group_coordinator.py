"""The group coordinator: runs the steps of ``group_state`` inside the metadata store.

Embedded logstore has no coordinator process: every member runs these operations itself, each
one an atomic read-modify-write of the group in the metadata store (SQLite or PostgreSQL), so
members in any number of processes (or, with PostgreSQL, hosts) agree on one state. The
operations mirror Kafka's group APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups), so the Kafka-protocol
broker can serve the same stored state.

Time comes from the injected clock (session expiry, rebalance deadlines). Members on different
hosts must have clocks that agree to well within their session timeouts.

Stateless apart from its store and clock: thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from logstore.backends.group_records import CommittedOffset, GroupRecord, GroupSnapshot
from logstore.backends.metadata import MetadataStore
from logstore.clock import Clock
from logstore.coordinator import consumer_protocol, group_state
from logstore.coordinator.group_state import GroupView, JoinRequest
from logstore.errors import GroupIdNotFoundError, LogstoreError
from logstore.types import TopicPartition

T = TypeVar("T")


def _raised(result: T | LogstoreError) -> T:
    """Steps return protocol outcomes as exceptions (see group_state): raise them now that
    the step's maintenance is written."""
    if isinstance(result, LogstoreError):
        raise result
    return result


class GroupCoordinator:
    """Group operations over a metadata store (see the module docstring)."""

    def __init__(self, store: MetadataStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def join_group(self, group_id: str, request: JoinRequest) -> GroupView:
        same = (consumer_protocol.same_subscription if request.protocol_type == "consumer"
                else group_state.same_bytes)
        return self._store.update_group(
            group_id, lambda s: group_state.join(s, group_id, request, self._clock.time_ms(),
                                                 same_subscription=same)
        )

    def sync_group(
        self, group_id: str, member_id: str, generation: int,
        assignments: Mapping[str, bytes] | None = None,
    ) -> GroupView:
        return _raised(self._store.update_group(
            group_id, lambda s: group_state.sync(
                s, group_id, member_id, generation, assignments, self._clock.time_ms())
        ))

    def heartbeat(self, group_id: str, member_id: str, generation: int) -> GroupView:
        return _raised(self._store.update_group(
            group_id, lambda s: group_state.heartbeat(
                s, group_id, member_id, generation, self._clock.time_ms())
        ))

    def leave_group(self, group_id: str, member_id: str) -> None:
        self._store.update_group(
            group_id, lambda s: group_state.leave(s, group_id, member_id, self._clock.time_ms())
        )

    def leave_members(
        self, group_id: str, members: Sequence[tuple[str, str | None]]
    ) -> tuple[LogstoreError | None, ...]:
        """Remove members named by (member id, group instance id): Kafka's LeaveGroup v3+.
        Returns each one's outcome (None: removed); see ``group_state.leave_members``."""
        return self._store.update_group(
            group_id, lambda s: group_state.leave_members(s, group_id, members,
                                                          self._clock.time_ms())
        )

    def commit_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset], *,
        member_id: str = "", generation: int = group_state.NO_GENERATION,
    ) -> None:
        """Commit offsets as a member of ``generation`` (or, with the defaults, as a client
        that does not use group management)."""
        _raised(self._store.update_group(
            group_id, lambda s: group_state.commit(
                s, group_id, member_id, generation, offsets, self._clock.time_ms())
        ))

    def alter_offsets(
        self, group_id: str, offsets: Mapping[TopicPartition, CommittedOffset]
    ) -> None:
        self._store.update_group(
            group_id, lambda s: group_state.alter_offsets(s, group_id, offsets,
                                                          self._clock.time_ms())
        )

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        return self._store.fetch_offsets(group_id, partitions)

    def describe_group(self, group_id: str) -> GroupSnapshot:
        """The group after expiring dead members. Raises GroupIdNotFoundError."""
        self._store.update_group(
            group_id, lambda s: group_state.expire(s, group_id, self._clock.time_ms())
        )
        return self._store.read_group(group_id)

    def read_group(self, group_id: str) -> GroupSnapshot:
        """The group as stored (no lock, no maintenance: cheap enough to poll)."""
        return self._store.read_group(group_id)

    def current_group(self, group_id: str) -> GroupSnapshot:
        """The group now: as stored, after maintenance (a write) only if some member's
        session or a deadline has run out. ``group`` is None if the group does not exist."""
        snapshot = self._store.read_group(group_id)
        due = group_state.next_maintenance_ms(snapshot)
        if due is None or due > self._clock.time_ms():
            return snapshot
        try:
            return self.describe_group(group_id)
        except GroupIdNotFoundError:
            return GroupSnapshot(None)

    def list_groups(self) -> list[GroupRecord]:
        return self._store.list_groups()

    def delete_group(self, group_id: str) -> None:
        self._store.update_group(
            group_id, lambda s: group_state.delete_group(s, group_id, self._clock.time_ms())
        )
