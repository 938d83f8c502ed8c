"""Stored state of consumer groups: value types shared by the metadata store and the group
coordinator (``logstore.coordinator``).

A group is one row plus its member rows and its committed offsets. The coordinator changes them
only through :meth:`MetadataStore.update_group`: it reads a :class:`GroupSnapshot` under the
group's lock, computes a :class:`GroupUpdate` with a pure function, and the store writes it in
the same transaction. Member metadata and assignments are opaque bytes to the store (their
format belongs to the group's protocol type; see ``logstore.coordinator.consumer_protocol``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from logstore.types import TopicPartition

EMPTY = "Empty"
PREPARING_REBALANCE = "PreparingRebalance"
COMPLETING_REBALANCE = "CompletingRebalance"
STABLE = "Stable"
GROUP_STATES = (EMPTY, PREPARING_REBALANCE, COMPLETING_REBALANCE, STABLE)

GROUP_ID_MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """The group row.

    ``generation`` counts completed rebalances. ``state_since_ms`` is when the group entered
    ``state``; ``rebalance_deadline_ms`` is when a rebalance in progress stops waiting for
    members that have not rejoined (-1 outside rebalances).
    """

    group_id: str
    generation: int = 0
    state: str = EMPTY
    protocol_type: str = ""
    protocol: str | None = None
    leader_id: str | None = None
    state_since_ms: int = 0
    rebalance_deadline_ms: int = -1
    version: int = 0


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One member of a group.

    ``protocols``: the assignors it supports, most preferred first, each with its subscription
    metadata. ``join_generation``: the generation it has joined (it is part of the rebalance
    that produces that generation). ``assignment``: its assignment in ``join_generation``, once
    the leader has synced it.
    """

    member_id: str
    group_instance_id: str | None
    client_id: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]
    join_generation: int = -1
    assignment: bytes | None = None
    last_heartbeat_ms: int = 0

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """A committed offset: the next offset the group will consume from the partition."""

    offset: int
    metadata: str = ""
    leader_epoch: int = -1
    commit_ms: int = 0


@dataclass(frozen=True, slots=True)
class GroupSnapshot:
    """A group as read under its lock (``group`` None: the group does not exist)."""

    group: GroupRecord | None
    members: tuple[MemberRecord, ...] = ()

    def member(self, member_id: str) -> MemberRecord | None:
        for member in self.members:
            if member.member_id == member_id:
                return member
        return None


@dataclass(frozen=True, slots=True)
class GroupUpdate:
    """What one coordinator step writes.

    ``group``: the new group row (its ``version`` is ignored: the store bumps it), or None to
    leave it alone. ``delete_group`` removes the group with its members and offsets. Member rows
    in ``upsert_members`` replace rows with the same member id; ``delete_members`` are removed.
    """

    group: GroupRecord | None = None
    delete_group: bool = False
    upsert_members: tuple[MemberRecord, ...] = ()
    delete_members: tuple[str, ...] = ()
    commit_offsets: tuple[tuple[TopicPartition, CommittedOffset], ...] = ()
    delete_offsets: tuple[TopicPartition, ...] | None = field(default=None)
    """Partitions whose committed offsets are removed (None: none; empty tuple: none)."""

    @property
    def is_empty(self) -> bool:
        return (self.group is None and not self.delete_group and not self.upsert_members
                and not self.delete_members and not self.commit_offsets
                and not self.delete_offsets)
