"""``logstore acls``: the broker's ACLs (like kafka-acls), kept in the metadata store.

An ACL allows (or denies) a principal an operation on a resource: a topic, a consumer group,
the cluster or a transactional id, named literally (``*``: every one) or by prefix
(``--resource-pattern-type prefixed``). With no ACL at all the broker allows everything; the
first ACL switches authorization on, so add the ACLs of every principal that should keep
working (or make it a ``logstore serve --super-user``). Brokers see a change within a second.

``add`` takes one resource and any number of principals and operations (every combination is
added); ``list`` and ``delete`` take filters (an option left out matches anything; ``delete``
needs at least one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from logstore.backends.security_records import (
    CLUSTER_RESOURCE_NAME,
    WILDCARD,
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
    parse_enum,
)
from logstore.cli.output import CliError, count, echo_json, example, format_option, table
from logstore.cli.users import metadata_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from logstore.cli.main import CliState

HEADERS = ["PRINCIPAL", "PERMISSION", "OPERATION", "RESOURCE_TYPE", "PATTERN", "RESOURCE",
           "HOST"]
OPERATIONS = [op.value for op in AclOperation]
_OPERATIONS_HELP = ", ".join(OPERATIONS)


def _resource_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--topic", default=None, metavar="NAME",
                     help="A topic ('*': every topic)."),
        click.option("--group", default=None, metavar="NAME",
                     help="A consumer group ('*': every group)."),
        click.option("--cluster", is_flag=True, help="The cluster (kafka-cluster)."),
        click.option("--transactional-id", default=None, metavar="NAME",
                     help="A transactional id ('*': every one)."),
    ]):
        f = option(f)
    return f


def _resource(topic: str | None, group: str | None, cluster: bool,
              transactional_id: str | None) -> tuple[ResourceType, str] | None:
    given = [(kind, name) for kind, name in (
        (ResourceType.TOPIC, topic), (ResourceType.GROUP, group),
        (ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME if cluster else None),
        (ResourceType.TRANSACTIONAL_ID, transactional_id)) if name is not None]
    if len(given) > 1:
        raise CliError("give one resource: --topic, --group, --cluster or --transactional-id")
    return given[0] if given else None


def _json(binding: AclBinding) -> dict[str, str]:
    return {"principal": binding.principal, "permission": binding.permission.value,
            "operation": binding.operation.value,
            "resource_type": binding.resource_type.value,
            "resource_name": binding.resource_name, "pattern_type": binding.pattern_type.value,
            "host": binding.host}


def _row(binding: AclBinding) -> tuple[str, ...]:
    return (binding.principal, binding.permission.value, binding.operation.value,
            binding.resource_type.value, binding.pattern_type.value, binding.resource_name,
            binding.host)


def _show(bindings: list[AclBinding], fmt: str) -> None:
    if fmt == "json":
        echo_json([_json(b) for b in bindings])
    elif bindings:
        click.echo(table(HEADERS, [_row(b) for b in bindings]))


@click.group(epilog=example(
    "logstore acls add --principal User:alice --operation WRITE --operation READ "
    "--topic alice- --resource-pattern-type prefixed",
    "logstore acls list --principal User:alice",
    "logstore acls delete --principal User:alice --topic alice- "
    "--resource-pattern-type prefixed"))
def acls() -> None:
    """Manage the broker's ACLs: which principal may do what on which topic, group,
    transactional id or the cluster."""


@acls.command(epilog=example(
    "logstore acls add --principal User:alice --operation ALL --topic alice- "
    "--resource-pattern-type prefixed",
    "logstore acls add --principal User:alice --operation READ --group alice-app",
    "logstore acls add --principal 'User:*' --operation DESCRIBE --topic '*'",
    "logstore acls add --principal User:mallory --operation ALL --topic '*' --deny",
    "logstore acls add --principal 'User:CN=svc,O=Example' --operation IDEMPOTENT_WRITE "
    "--cluster"))
@click.option("--principal", "principals", multiple=True, required=True, metavar="PRINCIPAL",
              help="User:NAME (SASL), User:<subject DN> (client certificate) or User:* "
                   "(repeatable).")
@click.option("--operation", "operations", multiple=True, required=True,
              type=click.Choice(OPERATIONS, case_sensitive=False), metavar="OPERATION",
              help=f"What is allowed or denied (repeatable): {_OPERATIONS_HELP}.")
@_resource_options
@click.option("--resource-pattern-type", "pattern", default="literal", show_default=True,
              type=click.Choice(["literal", "prefixed"], case_sensitive=False),
              help="Whether the resource name is the name itself or a prefix of names.")
@click.option("--deny", is_flag=True, help="Deny instead of allow (a DENY wins over ALLOWs).")
@click.option("--host", default=WILDCARD, show_default=True,
              help="The client IP address the ACL applies to.")
@format_option
@click.pass_obj
def add(state: CliState, principals: tuple[str, ...], operations: tuple[str, ...],
        topic: str | None, group: str | None, cluster: bool, transactional_id: str | None,
        pattern: str, deny: bool, host: str, fmt: str) -> None:
    """Add ACLs: each --principal gets each --operation on the resource. Adding an ACL that
    exists changes nothing."""
    resource = _resource(topic, group, cluster, transactional_id)
    if resource is None:
        raise CliError("which resource? give --topic, --group, --cluster or --transactional-id")
    bindings = [AclBinding(principal, parse_enum(AclOperation, operation, "operation"),
                           resource[0], resource[1],
                           parse_enum(PatternType, pattern, "resource pattern type"),
                           AclPermission.DENY if deny else AclPermission.ALLOW, host)
                for principal in dict.fromkeys(principals)
                for operation in dict.fromkeys(o.upper() for o in operations)]
    with metadata_store(state) as store:
        added = store.add_acls(bindings)
    if fmt == "json":
        echo_json([_json(b) for b in added])
        return
    present = len(bindings) - len(added)
    click.echo(f"added {count(len(added), 'ACL')}"
               + (f" ({present} already present)" if present else ""))
    _show(added, fmt)


def _filter(principal: str | None, operation: str | None, resource: tuple[ResourceType, str]
            | None, pattern: str | None, permission: str | None, host: str | None) -> AclFilter:
    return AclFilter(
        principal=principal,
        operation=parse_enum(AclOperation, operation, "operation") if operation else None,
        resource_type=resource[0] if resource else None,
        resource_name=resource[1] if resource else None,
        pattern_type=parse_enum(PatternType, pattern, "resource pattern type")
        if pattern else None,
        permission=parse_enum(AclPermission, permission, "permission") if permission else None,
        host=host)


def _filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--principal", default=None, metavar="PRINCIPAL",
                     help="Only ACLs of this principal."),
        click.option("--operation", default=None,
                     type=click.Choice(OPERATIONS, case_sensitive=False),
                     metavar="OPERATION", help="Only ACLs of this operation."),
        _resource_options,
        click.option("--resource-pattern-type", "pattern", default=None,
                     type=click.Choice(["literal", "prefixed"], case_sensitive=False),
                     help="Only literal or only prefixed ACLs."),
        click.option("--permission", default=None,
                     type=click.Choice(["allow", "deny"], case_sensitive=False),
                     help="Only allowing or only denying ACLs."),
        click.option("--host", default=None, help="Only ACLs of this host."),
    ]):
        f = option(f)
    return f


@acls.command(name="list", epilog=example("logstore acls list",
                                          "logstore acls list --topic orders",
                                          "logstore acls list --principal User:alice "
                                          "--format json"))
@_filter_options
@format_option
@click.pass_obj
def list_(state: CliState, principal: str | None, operation: str | None, topic: str | None,
          group: str | None, cluster: bool, transactional_id: str | None, pattern: str | None,
          permission: str | None, host: str | None, fmt: str) -> None:
    """List ACLs (those matching the options given; the resource options match exactly, not
    every ACL that would apply to the resource)."""
    acl_filter = _filter(principal, operation,
                         _resource(topic, group, cluster, transactional_id), pattern,
                         permission, host)
    with metadata_store(state) as store:
        found = store.list_acls(acl_filter)
    _show(found, fmt)


@acls.command(epilog=example("logstore acls delete --principal User:alice",
                             "logstore acls delete --topic orders --operation WRITE"))
@_filter_options
@format_option
@click.pass_obj
def delete(state: CliState, principal: str | None, operation: str | None, topic: str | None,
           group: str | None, cluster: bool, transactional_id: str | None,
           pattern: str | None, permission: str | None, host: str | None, fmt: str) -> None:
    """Delete the ACLs matching the options (at least one) and show them."""
    acl_filter = _filter(principal, operation,
                         _resource(topic, group, cluster, transactional_id), pattern,
                         permission, host)
    if acl_filter.matches_everything:
        raise CliError("give at least one filter (--principal, a resource, --operation...)")
    with metadata_store(state) as store:
        deleted = store.delete_acls(acl_filter)
    if fmt == "json":
        echo_json([_json(b) for b in deleted])
        return
    click.echo(f"deleted {count(len(deleted), 'ACL')}")
    _show(deleted, fmt)
