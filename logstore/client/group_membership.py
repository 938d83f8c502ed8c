"""A consumer's membership in its group (Kafka's ConsumerCoordinator, client side).

The poll thread drives rebalances (:meth:`GroupMembership.ensure_active`): it joins, waits for
the generation to complete, computes the assignment if it is the leader, syncs, and applies the
new assignment through the consumer, which runs the rebalance listener on that same thread. A
heartbeat thread keeps the member alive between polls and raises flags for the poll thread:
a rebalance is in progress, the membership was lost (fenced, expired, or the coordinator was
unreachable for a whole session timeout), topic metadata changed, or the application stopped
polling for longer than ``max_poll_interval_ms`` (then it leaves the group at once, so its
partitions can move; the next poll reports them lost and rejoins).

Ownership rule: with eager assignors the member revokes everything before it rejoins; with
cooperative-sticky it keeps its partitions, revokes only those missing from its new assignment,
and then rejoins so they can be handed to their new owner. Either way, a partition is handed to
a member only after its previous owner gave it up or left the group.

Time: session expiry and the max-poll interval are judged on the log's clock, so a ManualClock
drives them in tests. The heartbeat thread beats once ``heartbeat_interval_ms`` passed on the
clock (woken when a ManualClock is advanced) or in real time, whichever comes first: the
interval is also how soon a member hears of a rebalance, which must not stall on a clock that
moves only when told. How long ``ensure_active`` may drive a rebalance is the poll's real-time
deadline.

Thread-safety: the flags and the member identity are shared with the heartbeat thread under a
lock; everything else runs on the poll thread.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from logstore.clock import Clock, ClockCondition
from logstore.coordinator.assignors import COOPERATIVE, PartitionAssignor, Subscription
from logstore.coordinator.consumer_protocol import (
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from logstore.coordinator.group_coordinator import GroupCoordinator
from logstore.coordinator.group_state import GroupView, JoinRequest
from logstore.errors import (
    FencedInstanceIdError,
    IllegalGenerationError,
    LogstoreError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from logstore.types import TopicPartition

PROTOCOL_TYPE = "consumer"
_RETRY_S = 0.05  # how often a member waiting in a rebalance checks the group again


class ConsumerRebalanceListener(Protocol):
    """Callbacks around rebalances, run on the thread that calls ``poll`` (or ``close``).

    ``on_partitions_revoked`` runs before partitions move away (the consumer may still commit
    their offsets there); ``on_partitions_lost`` instead when the membership was lost and the
    partitions may already belong to another member (committing is no longer possible).
    """

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None: ...

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None: ...


class PartitionOwner(Protocol):
    """What the membership needs from the consumer it belongs to."""

    def _revoke_partitions(self, partitions: set[TopicPartition], *, lost: bool) -> None: ...

    def _add_partitions(self, partitions: set[TopicPartition]) -> None: ...


@dataclass(frozen=True, slots=True)
class GroupOptions:
    group_id: str
    client_id: str
    group_instance_id: str | None
    session_timeout_ms: int
    heartbeat_interval_ms: int
    max_poll_interval_ms: int


class GroupMembership:
    """One consumer's membership (see the module docstring)."""

    def __init__(
        self,
        coordinator: GroupCoordinator,
        options: GroupOptions,
        assignors: list[PartitionAssignor],
        *,
        owner: PartitionOwner,
        partition_counts: Callable[[list[str]], dict[str, int]],
        topics: Callable[[], list[str]],
        clock: Clock,
    ) -> None:
        self._coordinator = coordinator
        self._clock = clock
        self.options = options
        self._assignors = {a.name: a for a in assignors}
        self._preference = [a.name for a in assignors]
        self._owner = owner
        self._partition_counts = partition_counts
        self._topics = topics
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set by close(): ends a rebalance wait on the poll thread
        # The heartbeat thread waits here; close() and ManualClock.advance() notify it.
        self._beat = ClockCondition(clock)
        self.member_id = ""
        self.generation = -1
        self.owned: set[TopicPartition] = set()
        self._topics_wanted: list[str] = []
        self._pattern: re.Pattern[str] | None = None
        self._phase = "unjoined"  # unjoined, joining, syncing, stable
        self._view: GroupView | None = None
        self._rejoin: str | None = "joining"  # why the poll thread must (re)join
        self._ask_rebalance = False
        self._lost = False
        self._assigned_counts: dict[str, int] = {}
        self._last_poll = clock.monotonic_ms()
        self._last_contact = clock.monotonic_ms()  # last successful join/sync/heartbeat
        self._closed = False
        self._thread = threading.Thread(
            target=self._heartbeat_loop, name=f"logstore-heartbeat-{options.client_id}", daemon=True
        )
        self._thread.start()

    # --- subscription ------------------------------------------------------------------------

    def subscribe(self, topics: list[str] | None, pattern: re.Pattern[str] | None) -> None:
        with self._lock:
            self._topics_wanted = sorted(set(topics or []))
            self._pattern = pattern
            self._rejoin = self._rejoin or "subscription changed"
            # A new member triggers a rebalance by joining; a member already in the group must
            # ask for one (its new topics may need partitions moved).
            self._ask_rebalance = bool(self.member_id)

    def subscribed_topics(self) -> list[str]:
        if self._pattern is None:
            return list(self._topics_wanted)
        return sorted(t for t in self._topics() if self._pattern.fullmatch(t))

    @property
    def protocol(self) -> str | None:
        return self._view.protocol if self._view is not None else None

    @property
    def is_stable(self) -> bool:
        with self._lock:
            return self._phase == "stable" and self._rejoin is None and not self._lost

    # --- the poll thread ---------------------------------------------------------------------

    def polled(self) -> None:
        """Record that the application polled (for max.poll.interval.ms)."""
        self._last_poll = self._clock.monotonic_ms()

    def ensure_active(self, deadline: float) -> bool:
        """Drive the rebalance until this member is stable or ``deadline`` (monotonic seconds)
        passes. Returns whether the member is stable (its assignment is current)."""
        session_ms = self.options.session_timeout_ms
        while not self._closed:
            if (self._phase == "stable"
                    and self._clock.monotonic_ms() - self._last_contact > session_ms):
                # No word from the group for a whole session (this process was frozen, or the
                # store unreachable): the group has expired us, so our partitions may already
                # be another member's. Give them up before fetching anything.
                self._flag(lost=True)
            with self._lock:
                lost, self._lost = self._lost, False
                rejoin = self._rejoin
                phase = self._phase
            if lost:
                self._lose_partitions()
                phase = "unjoined"
            if phase == "stable" and rejoin is None:
                return True
            if phase in ("stable", "unjoined"):
                self._start_rebalance()
            if self._phase == "joining" and self._join():
                continue
            if self._phase == "syncing" and self._sync():
                continue
            if self._phase == "stable":
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.wait(min(_RETRY_S, remaining))
        return False

    def _start_rebalance(self) -> None:
        if self.owned and not self._is_cooperative():
            revoked = set(self.owned)
            self.owned = set()
            self._owner._revoke_partitions(revoked, lost=False)
        with self._lock:
            self._rejoin = None
            self._phase = "joining"

    def _is_cooperative(self) -> bool:
        protocol = self.protocol or self._preference[0]
        assignor = self._assignors.get(protocol)
        return assignor is not None and assignor.rebalance_protocol == COOPERATIVE

    def _join(self) -> bool:
        """One join attempt; True if the generation completed (go on to sync)."""
        subscription = Subscription(
            topics=tuple(self.subscribed_topics()),
            owned_partitions=tuple(sorted(self.owned)),
            generation=self.generation,
            group_instance_id=self.options.group_instance_id,
        )
        metadata = encode_subscription(subscription)
        with self._lock:
            ask, self._ask_rebalance = self._ask_rebalance, False
        request = JoinRequest(
            member_id=self.member_id,
            group_instance_id=self.options.group_instance_id,
            client_id=self.options.client_id,
            protocol_type=PROTOCOL_TYPE,
            protocols=tuple((name, metadata) for name in self._preference),
            session_timeout_ms=self.options.session_timeout_ms,
            rebalance_timeout_ms=self.options.max_poll_interval_ms,
            rebalance=ask,
        )
        try:
            view = self._coordinator.join_group(self.options.group_id, request)
        except UnknownMemberIdError:
            self._reset_identity()
            return False
        self._last_contact = self._clock.monotonic_ms()
        with self._lock:
            self.member_id = view.member_id
            self._view = view
        if not view.joined:
            return False
        self.generation = view.generation
        if view.assignment is not None:  # a static member taking its old place back
            self._apply(view)
            return True
        with self._lock:
            self._phase = "syncing"
        return True

    def _sync(self) -> bool:
        """One sync attempt; True once the assignment arrived (or a rejoin is needed)."""
        view = self._view
        if view is None:
            return False
        assignments = self._assign(view) if view.is_leader else None
        try:
            view = self._coordinator.sync_group(
                self.options.group_id, self.member_id, self.generation, assignments
            )
        except (RebalanceInProgressError, IllegalGenerationError):
            with self._lock:
                self._phase = "joining"
            return True
        except UnknownMemberIdError:
            self._reset_identity()
            with self._lock:
                self._lost = bool(self.owned)
            return True
        self._last_contact = self._clock.monotonic_ms()
        if view.assignment is None:
            return False
        self._apply(view)
        return True

    def _assign(self, view: GroupView) -> dict[str, bytes]:
        """The leader's part: run the group's assignor over every member's subscription."""
        protocol = view.protocol or self._preference[0]
        assignor = self._assignors[protocol]
        # The instance id is not part of the encoded subscription: the group knows it.
        subscriptions = {
            member.member_id: replace(decode_subscription(member.metadata_for(protocol)),
                                      group_instance_id=member.group_instance_id)
            for member in view.members
        }
        topics = sorted({t for s in subscriptions.values() for t in s.topics})
        counts = self._partition_counts(topics)
        result = assignor.assign(counts, subscriptions)
        return {member_id: encode_assignment(result.get(member_id, []))
                for member_id in subscriptions}

    def _apply(self, view: GroupView) -> None:
        assigned = decode_assignment(view.assignment or b"")
        revoked = self.owned - assigned
        added = assigned - self.owned
        if revoked:
            self.owned -= revoked
            self._owner._revoke_partitions(revoked, lost=False)
        self.owned |= added
        with self._lock:
            self._view = view
            self._phase = "stable"
            if revoked and self._is_cooperative():
                # Give the revoked partitions a chance to reach their new owner (KIP-429).
                self._rejoin = self._rejoin or "revoked partitions"
                self._ask_rebalance = True
        self._assigned_counts = self._partition_counts(self.subscribed_topics())
        self._owner._add_partitions(added)

    def _lose_partitions(self) -> None:
        lost, self.owned = set(self.owned), set()
        self._reset_identity()
        if lost:
            self._owner._revoke_partitions(lost, lost=True)

    def _reset_identity(self) -> None:
        with self._lock:
            self.member_id = ""
            self.generation = -1
            self._phase = "unjoined"
            self._view = None
            self._rejoin = self._rejoin or "rejoining as a new member"

    # --- offsets -----------------------------------------------------------------------------

    def identity(self) -> tuple[str, int]:
        """(member id, generation) to commit under."""
        with self._lock:
            return self.member_id, self.generation

    # --- the heartbeat thread ------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        clock = self._clock
        interval_ms = self.options.heartbeat_interval_ms
        last_ok = last_beat = clock.monotonic_ms()
        while True:
            now = self._wait_for_beat(last_beat, interval_ms)
            if now is None:
                return
            # The interval counts from here, before the request: a clock advanced while it
            # runs has the next beat follow at once.
            last_beat = now
            with self._lock:
                stable = self._phase == "stable" and self._rejoin is None and not self._lost
                member_id, generation = self.member_id, self.generation
            if now - self._last_poll > self.options.max_poll_interval_ms and member_id:
                self._leave_for_poll_timeout(member_id)
                continue
            if not stable:
                last_ok = now
                continue
            # Contact counts from when the request was made (the time the group records for
            # it), not when it returned: never later than the group believes.
            try:
                self._coordinator.heartbeat(self.options.group_id, member_id, generation)
                last_ok = self._last_contact = now
            except RebalanceInProgressError:
                self._flag(rejoin="rebalance in progress")
                last_ok = self._last_contact = now
            except (UnknownMemberIdError, IllegalGenerationError, FencedInstanceIdError):
                self._flag(lost=True)
            except LogstoreError:
                # The coordinator is unreachable: after a whole session timeout the group has
                # expired this member, so its partitions must be treated as lost.
                if now - last_ok > self.options.session_timeout_ms:
                    self._flag(lost=True)
                continue
            self._check_metadata()

    def _wait_for_beat(self, since_ms: float, interval_ms: float) -> float | None:
        """Wait until ``interval_ms`` passed on the clock since ``since_ms``, or in real time
        from now (see the module docstring); return the clock's time then, or None once
        closed."""
        with self._beat:
            real_deadline = time.monotonic() + interval_ms / 1000.0
            while not self._closed:
                now = self._clock.monotonic_ms()
                real_left = real_deadline - time.monotonic()
                if now - since_ms >= interval_ms or real_left <= 0:
                    return now
                self._beat.wait(real_left)  # also woken when a ManualClock is advanced
        return None

    def _leave_for_poll_timeout(self, member_id: str) -> None:
        if self.options.group_instance_id is None:
            try:
                self._coordinator.leave_group(self.options.group_id, member_id)
            except LogstoreError:
                pass  # the session timeout removes it anyway
        with self._lock:
            self.member_id = ""  # left: the next poll rejoins as a new member
            self._lost = True

    def _check_metadata(self) -> None:
        try:
            counts = self._partition_counts(self.subscribed_topics())
        except LogstoreError:
            return
        if counts != self._assigned_counts:
            self._flag(rejoin="topic metadata changed", ask=True)

    def _flag(self, *, rejoin: str | None = None, lost: bool = False, ask: bool = False) -> None:
        with self._lock:
            if rejoin is not None and self._rejoin is None:
                self._rejoin = rejoin
            self._lost = self._lost or lost
            self._ask_rebalance = self._ask_rebalance or ask

    # --- closing -----------------------------------------------------------------------------

    def close(self, *, leave: bool) -> None:
        """Stop heartbeating; leave the group (dynamic members) so partitions move at once."""
        self._closed = True
        self._wake.set()
        with self._beat:
            self._beat.notify_all()
        self._thread.join(timeout=10)
        member_id, _ = self.identity()
        if leave and member_id and self.options.group_instance_id is None:
            try:
                self._coordinator.leave_group(self.options.group_id, member_id)
            except LogstoreError:
                pass  # the session timeout removes it anyway
