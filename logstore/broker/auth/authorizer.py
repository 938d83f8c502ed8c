"""The broker's ACL authorizer: may this principal, from this host, do this operation on this
resource?

Rules (Kafka's ``StandardAuthorizer``, with one addition):

1. Super users (``BrokerConfig.super_users``) may do everything.
2. **No ACL in the metadata store at all: everything is allowed** (the addition: a broker
   that nobody has written ACLs for behaves as one without an authorizer; authentication, if
   the listener asks for it, still applies). The first ACL switches authorization on for
   every principal and resource.
3. The ACLs that apply are those whose resource matches (the literal name, the literal ``*``,
   or a prefix of the name, for the same resource type), whose principal is the client's or
   ``User:*``, whose host is the client's address or ``*``, and whose operation is the one
   asked for or ``ALL``.
4. A DENY among them denies. Otherwise an ALLOW allows; an ALLOW of READ, WRITE, DELETE or
   ALTER also allows DESCRIBE, and one of ALTER_CONFIGS allows DESCRIBE_CONFIGS.
5. Otherwise: denied, unless ``allow_everyone_if_no_acl_found`` and no ACL at all (of any
   principal) names the resource (Kafka's ``allow.everyone.if.no.acl.found``; off by
   default, so a principal limited to its own topics cannot use topics nobody wrote ACLs for).

The ACLs are read from the metadata store at most once per ``max_age_ms``, on the storage
threads: once they are older, the next check starts a read and goes on deciding with the ACLs
it has until the read is done, so no request waits for the metadata store (an ACL change made
by ``logstore acls`` takes effect within ``max_age_ms`` and one read). With ``max_age_ms`` 0
every check waits for a fresh read (tests). If reading fails, the last ACLs read stay in force
(and everything is denied if none were ever read), and the failure is logged.

Thread-safety: used on the broker's event loop only; the snapshot is immutable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from logstore.backends.security_records import (
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AclBinding,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)

if TYPE_CHECKING:
    from logstore.backends.metadata import MetadataStore

_log = logging.getLogger("logstore.broker")

#: What an ALLOW of the key also allows (Kafka's implied operations).
_IMPLIED_BY: dict[AclOperation, frozenset[AclOperation]] = {
    AclOperation.DESCRIBE: frozenset({AclOperation.DESCRIBE, AclOperation.READ,
                                      AclOperation.WRITE, AclOperation.DELETE,
                                      AclOperation.ALTER, AclOperation.ALL}),
    AclOperation.DESCRIBE_CONFIGS: frozenset({AclOperation.DESCRIBE_CONFIGS,
                                              AclOperation.ALTER_CONFIGS, AclOperation.ALL}),
}

Run = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class AclSnapshot:
    """The ACLs at one moment, indexed for lookups."""

    bindings: tuple[AclBinding, ...] = ()
    literal: dict[tuple[ResourceType, str], tuple[AclBinding, ...]] = field(default_factory=dict)
    prefixed: dict[ResourceType, tuple[AclBinding, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, bindings: Iterable[AclBinding]) -> AclSnapshot:
        every = tuple(bindings)
        literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        prefixed: dict[ResourceType, list[AclBinding]] = {}
        for binding in every:
            if binding.pattern_type is PatternType.PREFIXED:
                prefixed.setdefault(binding.resource_type, []).append(binding)
            else:
                literal.setdefault((binding.resource_type, binding.resource_name),
                                   []).append(binding)
        return cls(every, {k: tuple(v) for k, v in literal.items()},
                   {k: tuple(v) for k, v in prefixed.items()})

    def for_resource(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        """Every binding whose resource pattern matches (any principal, operation, host)."""
        found = [*self.literal.get((resource_type, name), ()),
                 *(self.literal.get((resource_type, WILDCARD), ()) if name != WILDCARD else ())]
        found += [b for b in self.prefixed.get(resource_type, ())
                  if name.startswith(b.resource_name)]
        return found


class Authorizer:
    """Answers authorization questions from a cached :class:`AclSnapshot` (see the module
    docstring for the rules)."""

    def __init__(self, store: MetadataStore, *, super_users: Iterable[str] = (),
                 allow_everyone_if_no_acl_found: bool = False, max_age_ms: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found
        self._max_age_s = max_age_ms / 1000
        self._clock = clock
        self._snapshot: AclSnapshot | None = None
        self._loaded_at = 0.0
        self._loading: asyncio.Future[AclSnapshot | None] | None = None

    async def snapshot(self, run: Run) -> AclSnapshot | None:
        """The current ACLs (a read starts when they are older than ``max_age_ms``; one read
        at a time); None if they could never be read."""
        now = self._clock()
        if self._snapshot is not None and now - self._loaded_at < self._max_age_s:
            return self._snapshot
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load(run, now))
        if self._snapshot is not None and self._max_age_s > 0:
            return self._snapshot  # while the read runs: no request waits for the store
        return await asyncio.shield(self._loading)

    async def _load(self, run: Run, started: float) -> AclSnapshot | None:
        try:
            bindings = await run(self._store.list_acls)
        except Exception as exc:  # noqa: BLE001 - any failure: keep deciding on what we have
            _log.warning("cannot read the ACLs (%s): %s", "keeping the last ones read"
                         if self._snapshot is not None else "denying everything", exc)
            self._loaded_at = started  # retry after max_age_ms, not on every request
        else:
            self._snapshot = AclSnapshot.of(bindings)
            self._loaded_at = started
        finally:
            self._loading = None
        return self._snapshot

    async def authorize(self, run: Run, principal: str, host: str,
                        resource_type: ResourceType, name: str,
                        operation: AclOperation) -> bool:
        """May ``principal`` from ``host`` do ``operation`` on the resource?"""
        if principal in self.super_users:
            return True
        snapshot = await self.snapshot(run)
        if snapshot is None:
            return False
        return self.check(snapshot, principal, host, resource_type, name, operation)

    def check(self, snapshot: AclSnapshot, principal: str, host: str,
              resource_type: ResourceType, name: str, operation: AclOperation) -> bool:
        """The decision on a given snapshot (pure)."""
        if principal in self.super_users or not snapshot.bindings:
            return True
        bindings = snapshot.for_resource(resource_type, name)
        if not bindings:
            return self.allow_everyone_if_no_acl_found
        allowing = _IMPLIED_BY.get(operation, frozenset({operation, AclOperation.ALL}))
        allowed = False
        for binding in bindings:
            if not _applies(binding, principal, host):
                continue
            if binding.permission is AclPermission.DENY:
                if binding.operation in (operation, AclOperation.ALL):
                    return False
            elif binding.operation in allowing:
                allowed = True
        return allowed

    async def authorize_any(self, run: Run, principal: str, host: str,
                            resource_type: ResourceType, operation: AclOperation) -> bool:
        """May ``principal`` do ``operation`` on at least one resource of the type (Kafka's
        ``authorizeByResourceType``, e.g. WRITE on some topic implies IDEMPOTENT_WRITE)? An
        ALLOW counts unless a DENY of the operation covers its whole pattern."""
        if principal in self.super_users:
            return True
        snapshot = await self.snapshot(run)
        if snapshot is None:
            return False
        if not snapshot.bindings:
            return True
        of_type = [b for b in snapshot.bindings if b.resource_type is resource_type
                   and _applies(b, principal, host)
                   and b.operation in (operation, AclOperation.ALL)]
        if not of_type and self.allow_everyone_if_no_acl_found and not any(
                b.resource_type is resource_type for b in snapshot.bindings):
            return True
        denies = [b for b in of_type if b.permission is AclPermission.DENY]
        return any(b.permission is AclPermission.ALLOW and not any(_covers(d, b) for d in denies)
                   for b in of_type)


def _applies(binding: AclBinding, principal: str, host: str) -> bool:
    return (binding.principal in (principal, WILDCARD_PRINCIPAL)
            and binding.host in (WILDCARD, host))


def _covers(deny: AclBinding, allow: AclBinding) -> bool:
    """Whether every resource ``allow`` names is also named by ``deny``."""
    if deny.pattern_type is PatternType.LITERAL:
        if deny.resource_name == WILDCARD:
            return True
        return allow.pattern_type is PatternType.LITERAL and (
            allow.resource_name == deny.resource_name)
    return allow.resource_name != WILDCARD and allow.resource_name.startswith(
        deny.resource_name)
