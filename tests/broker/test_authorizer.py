"""The authorizer's rules on snapshots of ACLs (pure decisions), and its cache of the metadata
store's ACLs (re-read after ``max_age_ms`` on the injectable clock; the last ACLs kept if
reading fails, nothing allowed if none were ever read)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from logstore.backends.security_records import (
    AclBinding,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)

from logstore.broker.auth.authorizer import AclSnapshot, Authorizer
from logstore.errors import MetadataStoreError

TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
ALICE, BOB = "User:alice", "User:bob"
ALLOW, DENY = AclPermission.ALLOW, AclPermission.DENY
Op = AclOperation


def acl(principal: str, operation: AclOperation, name: str, *, kind: ResourceType = TOPIC,
        pattern: PatternType = PatternType.LITERAL, permission: AclPermission = ALLOW,
        host: str = "*") -> AclBinding:
    return AclBinding(principal, operation, kind, name, pattern, permission, host)


class FakeStore:
    def __init__(self, bindings: list[AclBinding]) -> None:
        self.bindings = bindings
        self.reads = 0
        self.fail = False

    def list_acls(self) -> list[AclBinding]:
        self.reads += 1
        if self.fail:
            raise MetadataStoreError("down", retriable=True)
        return list(self.bindings)


async def _run(fn: Any, *args: Any) -> Any:
    return fn(*args)


def decide(bindings: list[AclBinding], principal: str, operation: AclOperation, name: str,
           *, kind: ResourceType = TOPIC, host: str = "10.0.0.1", **options: Any) -> bool:
    authorizer = Authorizer(FakeStore(bindings), **options)
    return authorizer.check(AclSnapshot.of(bindings), principal, host, kind, name, operation)


def test_no_acl_at_all_allows_everything() -> None:
    assert decide([], ALICE, Op.DELETE, "anything")
    assert decide([], "User:ANONYMOUS", Op.ALTER, "kafka-cluster", kind=CLUSTER)


def test_once_any_acl_exists_a_resource_without_acls_is_denied() -> None:
    bindings = [acl(BOB, Op.ALL, "bobs")]
    assert not decide(bindings, ALICE, Op.READ, "elsewhere")
    assert decide(bindings, ALICE, Op.READ, "elsewhere", allow_everyone_if_no_acl_found=True)
    # ...but a resource that has ACLs is never open to everyone.
    assert not decide(bindings, ALICE, Op.READ, "bobs", allow_everyone_if_no_acl_found=True)


def test_literal_wildcard_and_prefixed_names_match() -> None:
    bindings = [acl(ALICE, Op.READ, "orders"), acl(ALICE, Op.WRITE, "*"),
                acl(ALICE, Op.DELETE, "tmp-", pattern=PatternType.PREFIXED)]
    assert decide(bindings, ALICE, Op.READ, "orders")
    assert not decide(bindings, ALICE, Op.READ, "orders2")
    assert decide(bindings, ALICE, Op.WRITE, "whatever")
    assert decide(bindings, ALICE, Op.DELETE, "tmp-1")
    assert not decide(bindings, ALICE, Op.DELETE, "tmp")
    assert not decide(bindings, ALICE, Op.READ, "orders", kind=GROUP), "types are separate"


def test_principal_and_host_must_match() -> None:
    bindings = [acl(ALICE, Op.READ, "t", host="10.0.0.1"), acl("User:*", Op.WRITE, "t")]
    assert decide(bindings, ALICE, Op.READ, "t", host="10.0.0.1")
    assert not decide(bindings, ALICE, Op.READ, "t", host="10.0.0.2")
    assert not decide(bindings, BOB, Op.READ, "t", host="10.0.0.1")
    assert decide(bindings, BOB, Op.WRITE, "t")


def test_a_deny_wins_over_any_allow() -> None:
    bindings = [acl(ALICE, Op.ALL, "t"), acl("User:*", Op.WRITE, "t", permission=DENY)]
    assert decide(bindings, ALICE, Op.READ, "t")
    assert not decide(bindings, ALICE, Op.WRITE, "t")
    bindings = [acl(ALICE, Op.ALL, "*"), acl(ALICE, Op.ALL, "secret-", permission=DENY,
                                             pattern=PatternType.PREFIXED)]
    assert not decide(bindings, ALICE, Op.DESCRIBE, "secret-1")


@pytest.mark.parametrize(("allowed", "asked", "expected"), [
    (Op.READ, Op.DESCRIBE, True), (Op.WRITE, Op.DESCRIBE, True),
    (Op.DELETE, Op.DESCRIBE, True), (Op.ALTER, Op.DESCRIBE, True),
    (Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS, True), (Op.ALL, Op.IDEMPOTENT_WRITE, True),
    (Op.DESCRIBE, Op.READ, False), (Op.CREATE, Op.DESCRIBE, False),
    (Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS, False),
])
def test_implied_operations(allowed: AclOperation, asked: AclOperation, expected: bool) -> None:
    assert decide([acl(ALICE, allowed, "t")], ALICE, asked, "t") is expected


def test_a_deny_of_read_does_not_deny_describe() -> None:
    bindings = [acl(ALICE, Op.DESCRIBE, "t"), acl(ALICE, Op.READ, "t", permission=DENY)]
    assert decide(bindings, ALICE, Op.DESCRIBE, "t")


def test_super_users_pass_even_a_deny() -> None:
    bindings = [acl("User:*", Op.ALL, "*", permission=DENY)]
    assert decide(bindings, "User:admin", Op.ALTER, "t", super_users=["User:admin"])
    assert not decide(bindings, ALICE, Op.ALTER, "t", super_users=["User:admin"])


def any_topic(bindings: list[AclBinding], principal: str, **options: Any) -> bool:
    authorizer = Authorizer(FakeStore(bindings), **options)
    return asyncio.run(authorizer.authorize_any(_run, principal, "10.0.0.1", TOPIC, Op.WRITE))


def test_authorize_any_looks_for_one_allowed_resource_not_wholly_denied() -> None:
    assert any_topic([], ALICE)
    assert any_topic([acl(ALICE, Op.WRITE, "a-", pattern=PatternType.PREFIXED)], ALICE)
    assert not any_topic([acl(ALICE, Op.READ, "a")], ALICE)
    assert not any_topic([acl(ALICE, Op.WRITE, "a"), acl(ALICE, Op.WRITE, "*",
                                                         permission=DENY)], ALICE)
    assert not any_topic([acl(ALICE, Op.WRITE, "a-1"),
                          acl(ALICE, Op.WRITE, "a-", pattern=PatternType.PREFIXED,
                              permission=DENY)], ALICE)
    assert any_topic([acl(ALICE, Op.WRITE, "b"), acl(ALICE, Op.WRITE, "a", permission=DENY)],
                     ALICE)


def test_acls_are_read_again_after_max_age_on_the_clock() -> None:
    now = [0.0]
    store = FakeStore([acl(BOB, Op.ALL, "t")])
    authorizer = Authorizer(store, max_age_ms=1000, clock=lambda: now[0])

    async def may(principal: str) -> bool:
        return await authorizer.authorize(_run, principal, "h", TOPIC, "t", Op.READ)

    async def scenario() -> None:
        assert not await may(ALICE) and await may(BOB), "the first check waits for a read"
        store.bindings.append(acl(ALICE, Op.READ, "t"))
        now[0] = 0.999
        assert not await may(ALICE) and store.reads == 1, "cached until max_age_ms"
        now[0] = 1.0
        assert not await may(ALICE), "stale: decided on the last ACLs while the read runs"
        await asyncio.sleep(0)
        assert await may(ALICE) and store.reads == 2

    asyncio.run(scenario())


def test_max_age_zero_reads_for_every_check() -> None:
    store = FakeStore([acl(BOB, Op.ALL, "t")])
    authorizer = Authorizer(store, max_age_ms=0)

    async def scenario() -> None:
        assert not await authorizer.authorize(_run, ALICE, "h", TOPIC, "t", Op.READ)
        store.bindings.append(acl(ALICE, Op.READ, "t"))
        assert await authorizer.authorize(_run, ALICE, "h", TOPIC, "t", Op.READ)
        assert store.reads == 2

    asyncio.run(scenario())


def test_a_failed_read_keeps_the_last_acls_or_denies_if_there_are_none() -> None:
    now = [0.0]
    store = FakeStore([acl(ALICE, Op.READ, "t")])
    store.fail = True
    authorizer = Authorizer(store, max_age_ms=1000, clock=lambda: now[0])

    async def may() -> bool:
        return await authorizer.authorize(_run, ALICE, "h", TOPIC, "t", Op.READ)

    async def scenario() -> None:
        assert not await may(), "never read: fail closed"
        store.fail = False
        now[0] = 5.0
        assert await may()
        store.fail = True
        store.bindings.clear()
        now[0] = 10.0
        assert await may()
        await asyncio.sleep(0)
        assert await may(), "the last ACLs read stay in force"
        assert store.reads == 3

    asyncio.run(scenario())
