"""``logstore acls add | list | delete``: every principal x operation of one resource added
idempotently, listing and deleting by filter, JSON, and one-line errors."""

from __future__ import annotations

import json

from logstore.backends.security_records import (
    AclBinding,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)

HEADER = ["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE_TYPE", "PATTERN", "RESOURCE", "HOST"]


def rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert lines[0].split() == HEADER
    return [line.split() for line in lines[1:]]


def test_add_every_principal_and_operation_of_one_resource(run, api) -> None:
    result = run("acls", "add", "--principal", "User:alice", "--principal", "User:bob",
                 "--operation", "read", "--operation", "WRITE", "--topic", "orders-",
                 "--resource-pattern-type", "prefixed")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "added 4 ACLs"
    assert rows("\n".join(result.stdout.splitlines()[1:]))[0] == [
        "User:alice", "ALLOW", "READ", "TOPIC", "PREFIXED", "orders-", "*"]
    assert set(api.metadata.list_acls()) == {
        AclBinding(principal, operation, ResourceType.TOPIC, "orders-", PatternType.PREFIXED)
        for principal in ("User:alice", "User:bob")
        for operation in (AclOperation.READ, AclOperation.WRITE)}
    again = run("acls", "add", "--principal", "User:alice", "--operation", "READ", "--topic",
                "orders-", "--resource-pattern-type", "prefixed")
    assert again.stdout == "added 0 ACLs (1 already present)\n"


def test_each_resource_type_and_deny_and_host(run, api) -> None:
    for args in (["--group", "billing"], ["--cluster"], ["--transactional-id", "copier-1"]):
        assert run("acls", "add", "--principal", "User:svc", "--operation", "ALL",
                   *args).exit_code == 0
    assert run("acls", "add", "--principal", "User:*", "--operation", "DESCRIBE", "--topic",
               "*", "--deny", "--host", "10.0.0.9").exit_code == 0
    found = {(b.resource_type, b.resource_name, b.permission, b.host)
             for b in api.metadata.list_acls()}
    assert found == {(ResourceType.GROUP, "billing", AclPermission.ALLOW, "*"),
                     (ResourceType.CLUSTER, "kafka-cluster", AclPermission.ALLOW, "*"),
                     (ResourceType.TRANSACTIONAL_ID, "copier-1", AclPermission.ALLOW, "*"),
                     (ResourceType.TOPIC, "*", AclPermission.DENY, "10.0.0.9")}


def test_list_filters_and_json(run) -> None:
    run("acls", "add", "--principal", "User:alice", "--operation", "READ", "--topic", "a")
    run("acls", "add", "--principal", "User:bob", "--operation", "READ", "--group", "g")
    assert [r[0] for r in rows(run("acls", "list").stdout)] == ["User:bob", "User:alice"]
    assert rows(run("acls", "list", "--topic", "a").stdout) == [
        ["User:alice", "ALLOW", "READ", "TOPIC", "LITERAL", "a", "*"]]
    assert run("acls", "list", "--principal", "User:carol").stdout == ""
    listed = json.loads(run("acls", "list", "--principal", "User:bob", "--format",
                            "json").stdout)
    assert listed == [{"principal": "User:bob", "permission": "ALLOW", "operation": "READ",
                       "resource_type": "GROUP", "resource_name": "g",
                       "pattern_type": "LITERAL", "host": "*"}]


def test_delete_by_filter(run, api) -> None:
    run("acls", "add", "--principal", "User:alice", "--operation", "READ", "--operation",
        "WRITE", "--topic", "a")
    run("acls", "add", "--principal", "User:bob", "--operation", "READ", "--topic", "a")
    result = run("acls", "delete", "--principal", "User:alice", "--operation", "write")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "deleted 1 ACL"
    assert {(b.principal, b.operation) for b in api.metadata.list_acls()} == {
        ("User:alice", AclOperation.READ), ("User:bob", AclOperation.READ)}
    deleted = json.loads(run("acls", "delete", "--topic", "a", "--format", "json").stdout)
    assert len(deleted) == 2 and api.metadata.list_acls() == []


def test_errors_are_one_line(run) -> None:
    cases = [
        (["add", "--principal", "alice", "--operation", "READ", "--topic", "t"],
         "error: a principal is TYPE:NAME, e.g. User:alice, got 'alice'\n"),
        (["add", "--principal", "User:a", "--operation", "READ"],
         "error: which resource? give --topic, --group, --cluster or --transactional-id\n"),
        (["add", "--principal", "User:a", "--operation", "READ", "--topic", "t", "--group",
          "g"], "error: give one resource: --topic, --group, --cluster or --transactional-id\n"),
        (["add", "--principal", "User:a", "--operation", "READ", "--topic", "t", "--host",
          "example.com"], "error: an ACL host is '*' or an IP address, got 'example.com'\n"),
        (["delete"], ("error: give at least one filter (--principal, a resource, "
                     "--operation...)\n")),
    ]
    for args, message in cases:
        result = run("acls", *args)
        assert (result.exit_code, result.stderr) == (1, message), args
    unknown = run("acls", "add", "--principal", "User:a", "--operation", "FLY", "--topic", "t")
    assert unknown.exit_code == 2 and "FLY" in unknown.stderr
