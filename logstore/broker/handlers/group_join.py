"""JoinGroup (v0-5) and SyncGroup (v0-3): Kafka's rebalance requests over the group coordinator.

The group coordinator (``logstore.coordinator``) is step-based: members drive it, each step an
atomic read-modify-write of the group in the metadata store, and embedded members poll it
until their generation completes. Kafka's clients instead send one JoinGroup and expect the
answer once the join phase is over (every known member rejoined, or the rebalance timeout
passed), then one SyncGroup answered once the leader's assignment is there. The broker bridges
the two by *holding* the request (:func:`hold`): it ran the member's step, and while the
answer is not ready it waits on the event loop (never on a thread), re-reading the group every
``POLL_S`` (a cheap read without the group's lock) or when a request served here changed the
group, and runs the step again only when the read shows it can make progress: the generation
completed, the assignment arrived, the member must be registered for a newer rebalance, a
session or a deadline ran out (the group moves on by time only when some step runs), or the
member's own session needs refreshing (Kafka keeps members waiting in a rebalance alive). A
held request gives up (REBALANCE_IN_PROGRESS, so the client rejoins) after the member's
rebalance plus session timeout, which the group's own deadlines make unreachable in practice.
A client that disconnects cancels its held request.

Member ids (KIP-394): a JoinGroup v4+ without a member id (and without a
``group.instance.id``) is answered MEMBER_ID_REQUIRED with a fresh id, which the broker keeps
in memory as *pending* for a session timeout; the next JoinGroup with that id joins as a new
member with it. Pending ids live in this broker's memory, as in Kafka's coordinator: after a
broker restart such a join is answered UNKNOWN_MEMBER_ID and the client starts over.

Rejoins follow Kafka's rule (``JoinRequest.kafka_rejoin``): a known member whose metadata
bytes changed, or the leader of a Stable group, starts a rebalance.

Authorization (as Kafka): both need READ on the group, checked before anything else; a principal
without it gets GROUP_AUTHORIZATION_FAILED and the group is not touched (:func:`may_use_group`,
also used by Heartbeat, LeaveGroup and OffsetCommit).

Thread-safety: handlers and :class:`GroupRuntime` live on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from logstore.backends.group_records import (
    COMPLETING_REBALANCE,
    PREPARING_REBALANCE,
    GroupSnapshot,
    MemberRecord,
)
from logstore.broker.auth import AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import error_code
from logstore.coordinator import group_state
from logstore.coordinator.consumer_protocol import binary_assignment, binary_subscription
from logstore.coordinator.group_coordinator import GroupCoordinator
from logstore.coordinator.group_state import GroupView, JoinRequest
from logstore.errors import (
    InconsistentGroupProtocolError,
    LogstoreError,
    LogstoreTimeoutError,
    MetadataStoreError,
    RebalanceInProgressError,
    StaleVersionError,
    StorageError,
    UnknownMemberIdError,
)
from logstore.protocol.apis import ApiKey, VersionRange

if TYPE_CHECKING:
    from logstore.broker.server import BrokerServices

JOIN_GROUP_VERSIONS = VersionRange(0, 5)
SYNC_GROUP_VERSIONS = VersionRange(0, 3)

#: Kafka's ``group.min.session.timeout.ms`` and ``group.max.session.timeout.ms`` defaults.
MIN_SESSION_TIMEOUT_MS = 6_000
MAX_SESSION_TIMEOUT_MS = 1_800_000
#: How often a held JoinGroup or SyncGroup re-reads its group (changes made through this broker
#: wake it at once; members in other processes are seen within this).
POLL_S = 0.05

COORDINATOR_NOT_AVAILABLE = 15
INVALID_GROUP_ID = 24
INVALID_SESSION_TIMEOUT = 26
GROUP_AUTHORIZATION_FAILED = 30
FENCED_INSTANCE_ID = 82
MEMBER_ID_REQUIRED = 79

_MAX_PENDING_PER_GROUP = 10_000
_MAX_HOSTS = 100_000


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.JOIN_GROUP, JOIN_GROUP_VERSIONS, join_group)
    dispatcher.register(ApiKey.SYNC_GROUP, SYNC_GROUP_VERSIONS, sync_group)


# --- what the broker keeps in memory -------------------------------------------------------------


class GroupRuntime:
    """A broker's in-memory group state: member ids handed out but not used yet (KIP-394),
    the address each member joined from (DescribeGroups' client host), and the held requests
    to wake when a request served here changed a group. All bounded; on the event loop."""

    def __init__(self) -> None:
        self._pending: dict[str, OrderedDict[str, float]] = {}
        self._hosts: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def add_pending(self, group_id: str, member_id: str, ttl_ms: int) -> None:
        pending = self._pending.setdefault(group_id, OrderedDict())
        pending[member_id] = asyncio.get_running_loop().time() + ttl_ms / 1000
        while len(pending) > _MAX_PENDING_PER_GROUP:
            pending.popitem(last=False)

    def is_pending(self, group_id: str, member_id: str) -> bool:
        pending = self._pending.get(group_id)
        if not pending:
            return False
        now = asyncio.get_running_loop().time()
        for stale in [m for m, expiry in pending.items() if expiry < now]:
            del pending[stale]
        if not pending:
            del self._pending[group_id]
            return False
        return member_id in pending

    def drop_pending(self, group_id: str, member_id: str) -> bool:
        pending = self._pending.get(group_id)
        if pending is None or pending.pop(member_id, None) is None:
            return False
        if not pending:
            del self._pending[group_id]
        return True

    def set_host(self, group_id: str, member_id: str, host: str) -> None:
        self._hosts[(group_id, member_id)] = host
        self._hosts.move_to_end((group_id, member_id))
        while len(self._hosts) > _MAX_HOSTS:
            self._hosts.popitem(last=False)

    def host(self, group_id: str, member_id: str) -> str:
        return self._hosts.get((group_id, member_id), "")

    def forget(self, group_id: str, member_ids: list[str] | None = None) -> None:
        """Drop what is kept about these members (all of the group's: None)."""
        if member_ids is None:
            self._pending.pop(group_id, None)
            member_ids = [m for g, m in self._hosts if g == group_id]
        for member_id in member_ids:
            self._hosts.pop((group_id, member_id), None)

    def changed(self, group_id: str) -> None:
        """A request served here changed the group: wake the requests held on it."""
        for event in self._waiters.get(group_id, ()):
            event.set()

    def waiter(self, group_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault(group_id, set()).add(event)
        return event

    def release(self, group_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(group_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[group_id]


_RUNTIMES: weakref.WeakKeyDictionary[BrokerServices, GroupRuntime] = (
    weakref.WeakKeyDictionary())


def runtime(services: BrokerServices) -> GroupRuntime:
    """The broker's :class:`GroupRuntime` (one per broker)."""
    found = _RUNTIMES.get(services)
    if found is None:
        found = _RUNTIMES[services] = GroupRuntime()
    return found


# --- shared by the group handlers ----------------------------------------------------------------


def coordinator_of(ctx: RequestContext) -> GroupCoordinator:
    return ctx.services.log.group_coordinator


def group_error_code(exc: BaseException) -> int:
    """The Kafka error code for a failed group operation: the metadata store unavailable (or
    a lost race, a timeout) is COORDINATOR_NOT_AVAILABLE, which clients retry after looking
    the coordinator up again; everything else carries its own code."""
    if isinstance(exc, MetadataStoreError | StorageError | StaleVersionError |
                  LogstoreTimeoutError) and exc.retriable:
        return COORDINATOR_NOT_AVAILABLE
    return error_code(exc)


async def member_error_code(ctx: RequestContext, exc: BaseException, group_id: str,
                            instance_id: str | None) -> int:
    """:func:`group_error_code`, except that a static member whose instance id now belongs to
    another member id is told FENCED_INSTANCE_ID (Kafka's answer; librdkafka then stops for
    good instead of rejoining and fencing the new instance in turn)."""
    if isinstance(exc, UnknownMemberIdError) and instance_id is not None:
        try:
            snapshot = await ctx.run(coordinator_of(ctx).read_group, group_id)
        except LogstoreError:
            return group_error_code(exc)
        if any(m.group_instance_id == instance_id for m in snapshot.members):
            return FENCED_INSTANCE_ID
    return group_error_code(exc)


async def may_use_group(ctx: RequestContext, group_id: str) -> bool:
    """May the principal READ the group (join it, heartbeat, leave, commit offsets)?"""
    return await ctx.authorize(ResourceType.GROUP, group_id, AclOperation.READ)


def ms(value: datetime.timedelta) -> int:
    return value // datetime.timedelta(milliseconds=1)


def client_host(peer: str) -> str:
    """Kafka's form of a client's address in DescribeGroups ("/127.0.0.1")."""
    return "/" + peer.rsplit(":", 1)[0]


# --- holding a request until the group is ready --------------------------------------------------


Ready = Callable[[GroupSnapshot, MemberRecord], bool]


async def hold(ctx: RequestContext, group_id: str, member_id: str,
               step: Callable[[], GroupView], done: Callable[[GroupView], bool],
               ready: Ready) -> GroupView:
    """Run ``step`` (a coordinator call for this member) again until ``done(view)``.

    Between steps the group is re-read; a step runs only when ``ready(snapshot, member)``
    says the answer may be there, a session or deadline of the group ran out, or the member's
    own session needs refreshing (see the module docstring). Raises what the step raises, and
    RebalanceInProgressError when the member's rebalance and session timeouts passed.
    """
    coordinator = coordinator_of(ctx)
    clock = ctx.services.log.clock
    group_runtime = runtime(ctx.services)
    loop = asyncio.get_running_loop()
    give_up_at: float | None = None
    while True:
        event = group_runtime.waiter(group_id)
        try:
            while True:
                snapshot = await ctx.run(coordinator.read_group, group_id)
                member = snapshot.member(member_id)
                if snapshot.group is None or member is None:
                    break  # the step says why (unknown member)
                if give_up_at is None:
                    give_up_at = loop.time() + (
                        member.rebalance_timeout_ms + member.session_timeout_ms) / 1000
                now_ms = clock.time_ms()
                due = group_state.next_maintenance_ms(snapshot)
                if (ready(snapshot, member) or (due is not None and due <= now_ms)
                        or now_ms - member.last_heartbeat_ms >= member.session_timeout_ms / 3):
                    break
                left = give_up_at - loop.time()
                if left <= 0:
                    raise RebalanceInProgressError(
                        f"group {group_id!r} did not complete its rebalance in time: rejoin")
                try:
                    await asyncio.wait_for(event.wait(), min(POLL_S, left))
                except TimeoutError:
                    pass
                event.clear()
        finally:
            group_runtime.release(group_id, event)
        view = await ctx.run(step)
        group_runtime.changed(group_id)
        if done(view):
            return view


def _joined_or_stale(snapshot: GroupSnapshot, member: MemberRecord) -> bool:
    """A waiting JoinGroup's step can answer: the join phase is over (or the member has to
    be registered for a rebalance that started since)."""
    group = snapshot.group
    return group is None or not (group.state == PREPARING_REBALANCE
                and member.join_generation == group.generation + 1)


def _assigned_or_stale(snapshot: GroupSnapshot, member: MemberRecord) -> bool:
    """A waiting SyncGroup's step can answer: the assignment is there, or the group left the
    generation (the step answers REBALANCE_IN_PROGRESS or ILLEGAL_GENERATION)."""
    group = snapshot.group
    return group is None or not (group.state == COMPLETING_REBALANCE and member.assignment is None
                and member.join_generation == group.generation)


# --- JoinGroup ----------------------------------------------------------------------------------


async def join_group(ctx: RequestContext, request: Any) -> Any:
    version = ctx.api_version
    module = response_module(ApiKey.JOIN_GROUP, version)
    group_id: str = request.group_id
    member_id: str = request.member_id

    def answer(code: int, *, view: GroupView | None = None, member: str = member_id,
               members: tuple[Any, ...] = ()) -> Any:
        return build(module.JoinGroupResponse, throttle_time_ms=0, error_code=code,
                     generation_id=view.generation if view else -1,
                     protocol_name=(view.protocol or "") if view else "",
                     leader=(view.leader_id or "") if view else "",
                     member_id=member, members=members)

    if not await may_use_group(ctx, group_id):
        return answer(GROUP_AUTHORIZATION_FAILED, member="")
    session_ms = ms(request.session_timeout)
    rebalance_ms = ms(request.rebalance_timeout) if version >= 1 else session_ms
    instance_id: str | None = request.group_instance_id if version >= 5 else None
    if not group_id:
        return answer(INVALID_GROUP_ID)
    if not MIN_SESSION_TIMEOUT_MS <= session_ms <= MAX_SESSION_TIMEOUT_MS:
        return answer(INVALID_SESSION_TIMEOUT)
    if not request.protocol_type or not request.protocols or rebalance_ms <= 0:
        return answer(InconsistentGroupProtocolError.error_code)
    group_runtime = runtime(ctx.services)
    if not member_id and instance_id is None and version >= 4:
        new_id = f"{ctx.client_id or ''}-{uuid.uuid4()}"
        group_runtime.add_pending(group_id, new_id, session_ms)
        return answer(MEMBER_ID_REQUIRED, member=new_id)
    pending = bool(member_id) and group_runtime.is_pending(group_id, member_id)
    join = JoinRequest(
        member_id="" if pending else member_id,
        group_instance_id=instance_id,
        client_id=ctx.client_id or "",
        protocol_type=request.protocol_type,
        protocols=tuple((p.name, p.metadata) for p in request.protocols),
        session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms,
        new_member_id=member_id if pending else "",
        kafka_rejoin=True,
    )
    coordinator = coordinator_of(ctx)
    try:
        view = await ctx.run(coordinator.join_group, group_id, join)
        group_runtime.drop_pending(group_id, view.member_id)
        group_runtime.set_host(group_id, view.member_id, client_host(ctx.peer))
        group_runtime.changed(group_id)
        member_id = view.member_id
        if not view.joined:
            # Waiting for the others: run the step again as a plain rejoin (never asking for
            # another rebalance), which keeps the member registered and alive.
            again = replace(join, member_id=member_id, new_member_id="", kafka_rejoin=False)
            view = await hold(ctx, group_id, member_id,
                              lambda: coordinator.join_group(group_id, again),
                              lambda v: v.joined, _joined_or_stale)
    except LogstoreError as exc:
        return answer(await member_error_code(ctx, exc, group_id, instance_id),
                      member=member_id)
    protocol = view.protocol or ""
    consumer = request.protocol_type == "consumer"
    members = tuple(
        build_in(module, "JoinGroupResponseMember", member_id=m.member_id,
                 group_instance_id=m.group_instance_id,
                 metadata=(binary_subscription(m.metadata_for(protocol)) if consumer
                           else m.metadata_for(protocol)))
        for m in view.members) if view.is_leader else ()
    return answer(0, view=view, member=view.member_id, members=members)


# --- SyncGroup ----------------------------------------------------------------------------------


async def sync_group(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.SYNC_GROUP, ctx.api_version)
    group_id: str = request.group_id
    member_id: str = request.member_id
    generation: int = request.generation_id
    instance_id: str | None = request.group_instance_id if ctx.api_version >= 3 else None
    if not await may_use_group(ctx, group_id):
        return build(module.SyncGroupResponse, throttle_time_ms=0,
                     error_code=GROUP_AUTHORIZATION_FAILED, assignment=b"")
    assignments = {a.member_id: a.assignment for a in request.assignments}
    coordinator = coordinator_of(ctx)

    def step(given: dict[str, bytes] | None) -> GroupView:
        return coordinator.sync_group(group_id, member_id, generation, given)

    try:
        view = await ctx.run(step, assignments or None)
        if (view.assignment is None and not assignments and view.leader_id == member_id
                and view.state == COMPLETING_REBALANCE):
            view = await ctx.run(step, {})  # a leader that assigned nothing to anyone
        runtime(ctx.services).changed(group_id)
        if view.assignment is None:
            view = await hold(ctx, group_id, member_id, lambda: step(None),
                              lambda v: v.assignment is not None, _assigned_or_stale)
    except LogstoreError as exc:
        code = await member_error_code(ctx, exc, group_id, instance_id)
        return build(module.SyncGroupResponse, throttle_time_ms=0, error_code=code,
                     assignment=b"")
    return build(module.SyncGroupResponse, throttle_time_ms=0, error_code=0,
                 assignment=binary_assignment(view.assignment or b""))
