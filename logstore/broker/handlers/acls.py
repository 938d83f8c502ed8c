"""DescribeAcls, CreateAcls and DeleteAcls (v1-v3): the ACLs of the metadata store over the wire,
so Kafka's admin clients (``AdminClient.create_acls``, ``kafka-acls.sh``) manage what
``logstore acls`` manages.

Authorization, as Kafka's: DescribeAcls needs DESCRIBE on the cluster, CreateAcls and
DeleteAcls need ALTER on it; otherwise CLUSTER_AUTHORIZATION_FAILED (for the whole request, or
for each creation and filter). The authorizer reads ACLs at most once per its ``max_age_ms``,
so a change takes effect for authorization within that time.

Wire codes (Kafka's): resource types ANY 1, TOPIC 2, GROUP 3, CLUSTER 4, TRANSACTIONAL_ID 5
(DELEGATION_TOKEN 6 and USER 7 are refused: logstore has neither); pattern types ANY 1,
MATCH 2, LITERAL 3, PREFIXED 4; operations ANY 1, ALL 2, READ 3 ... IDEMPOTENT_WRITE 12;
permissions ANY 1, DENY 2, ALLOW 3. A filter's ANY (and a null name, principal or host)
matches every value; MATCH selects the bindings that apply to the named resource: the literal
name, the literal ``*`` and the prefixes of the name. A creation with an invalid field gets
INVALID_REQUEST with a message naming it, and the others are still created.
"""

from __future__ import annotations

from typing import Any

from logstore.backends.security_records import (
    WILDCARD,
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
)
from logstore.broker.auth import CLUSTER_RESOURCE_NAME
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import ACL_OPERATION_CODES, error_code
from logstore.errors import AuthorizationError, InvalidArgumentError, LogstoreError
from logstore.protocol.apis import ApiKey, VersionRange

VERSIONS = VersionRange(1, 3)
INVALID_REQUEST = 42

ANY = 1
MATCH = 2
RESOURCE_TYPE_CODES: dict[ResourceType, int] = {
    ResourceType.TOPIC: 2, ResourceType.GROUP: 3, ResourceType.CLUSTER: 4,
    ResourceType.TRANSACTIONAL_ID: 5}
PATTERN_TYPE_CODES: dict[PatternType, int] = {PatternType.LITERAL: 3, PatternType.PREFIXED: 4}
PERMISSION_CODES: dict[AclPermission, int] = {AclPermission.DENY: 2, AclPermission.ALLOW: 3}
_RESOURCE_TYPES = {code: value for value, code in RESOURCE_TYPE_CODES.items()}
_PATTERN_TYPES = {code: value for value, code in PATTERN_TYPE_CODES.items()}
_OPERATIONS = {code: value for value, code in ACL_OPERATION_CODES.items()}
_PERMISSIONS = {code: value for value, code in PERMISSION_CODES.items()}


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.DESCRIBE_ACLS, VERSIONS, describe_acls)
    dispatcher.register(ApiKey.CREATE_ACLS, VERSIONS, create_acls)
    dispatcher.register(ApiKey.DELETE_ACLS, VERSIONS, delete_acls)


# --- DescribeAcls -----------------------------------------------------------------------------


async def describe_acls(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DESCRIBE_ACLS, ctx.api_version)

    def answer(code: int, message: str | None, resources: tuple[Any, ...] = ()) -> Any:
        return build(module.DescribeAclsResponse, throttle_time_ms=0, error_code=code,
                     error_message=message, resources=resources)

    if not await _may(ctx, AclOperation.DESCRIBE):
        return answer(AuthorizationError.error_code,
                      "not authorized to describe the cluster's ACLs")
    try:
        selection = Selection.of(request)
        bindings = [b for b in await ctx.run(ctx.services.log.metadata.list_acls)
                    if selection.selects(b)]
    except LogstoreError as exc:
        return answer(_code(exc), str(exc))
    by_resource: dict[tuple[ResourceType, str, PatternType], list[AclBinding]] = {}
    for binding in bindings:
        key = (binding.resource_type, binding.resource_name, binding.pattern_type)
        by_resource.setdefault(key, []).append(binding)
    return answer(0, None, tuple(
        build_in(module, "DescribeAclsResource", resource_type=RESOURCE_TYPE_CODES[kind],
                 resource_name=name, pattern_type=PATTERN_TYPE_CODES[pattern],
                 acls=tuple(build_in(module, "AclDescription", principal=b.principal,
                                     host=b.host, operation=ACL_OPERATION_CODES[b.operation],
                                     permission_type=PERMISSION_CODES[b.permission])
                            for b in found))
        for (kind, name, pattern), found in sorted(by_resource.items(),
                                                   key=lambda item: _sort_key(item[0]))))


# --- CreateAcls -------------------------------------------------------------------------------


async def create_acls(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.CREATE_ACLS, ctx.api_version)

    def result(code: int, message: str | None) -> Any:
        return build_in(module, "AclCreationResult", error_code=code, error_message=message)

    if not await _may(ctx, AclOperation.ALTER):
        denied = result(AuthorizationError.error_code, "not authorized to alter the cluster")
        return build(module.CreateAclsResponse, throttle_time_ms=0,
                     results=tuple(denied for _ in request.creations))
    outcomes: list[AclBinding | LogstoreError] = []
    for creation in request.creations:
        try:
            outcomes.append(_binding(creation))
        except LogstoreError as exc:
            outcomes.append(exc)
    valid = [b for b in outcomes if isinstance(b, AclBinding)]
    stored: LogstoreError | None = None
    if valid:
        try:
            await ctx.run(ctx.services.log.metadata.add_acls, valid)
        except LogstoreError as exc:
            stored = exc
    results = []
    for outcome in outcomes:
        failure = outcome if isinstance(outcome, LogstoreError) else stored
        results.append(result(0, None) if failure is None
                       else result(_code(failure), str(failure)))
    return build(module.CreateAclsResponse, throttle_time_ms=0, results=tuple(results))


def _binding(creation: Any) -> AclBinding:
    """The binding a creation asks for; InvalidArgumentError naming a field it cannot be."""
    kind = _concrete(_RESOURCE_TYPES, creation.resource_type, "resource type")
    pattern = _concrete(_PATTERN_TYPES, creation.resource_pattern_type, "pattern type")
    operation = _concrete(_OPERATIONS, creation.operation, "operation")
    permission = _concrete(_PERMISSIONS, creation.permission_type, "permission type")
    name = creation.resource_name
    if kind == ResourceType.CLUSTER and pattern != PatternType.LITERAL:
        raise InvalidArgumentError(
            f"the cluster resource is the literal {CLUSTER_RESOURCE_NAME!r}: a "
            f"{pattern.value} pattern cannot name it")
    return AclBinding(principal=creation.principal, operation=operation, resource_type=kind,
                      resource_name=name, pattern_type=pattern, permission=permission,
                      host=creation.host)


def _concrete(codes: dict[int, Any], code: int, what: str) -> Any:
    found = codes.get(code)
    if found is None:
        raise InvalidArgumentError(f"{what} {code} cannot be given to an ACL here")
    return found


# --- DeleteAcls -------------------------------------------------------------------------------


async def delete_acls(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DELETE_ACLS, ctx.api_version)

    def filter_result(code: int, message: str | None, matching: tuple[Any, ...] = ()) -> Any:
        return build_in(module, "DeleteAclsFilterResult", error_code=code,
                        error_message=message, matching_acls=matching)

    if not await _may(ctx, AclOperation.ALTER):
        denied = filter_result(AuthorizationError.error_code,
                               "not authorized to alter the cluster")
        return build(module.DeleteAclsResponse, throttle_time_ms=0,
                     filter_results=tuple(denied for _ in request.filters))
    results = []
    for wanted in request.filters:
        try:
            selection = Selection.of(wanted)
            deleted = await ctx.run(_delete_selected, ctx.services.log.metadata, selection)
        except LogstoreError as exc:
            results.append(filter_result(_code(exc), str(exc)))
            continue
        results.append(filter_result(0, None, tuple(
            build_in(module, "DeleteAclsMatchingAcl", error_code=0, error_message=None,
                     resource_type=RESOURCE_TYPE_CODES[b.resource_type],
                     resource_name=b.resource_name,
                     pattern_type=PATTERN_TYPE_CODES[b.pattern_type], principal=b.principal,
                     host=b.host, operation=ACL_OPERATION_CODES[b.operation],
                     permission_type=PERMISSION_CODES[b.permission])
            for b in deleted)))
    return build(module.DeleteAclsResponse, throttle_time_ms=0, filter_results=tuple(results))


def _delete_selected(store: Any, selection: Selection) -> list[AclBinding]:
    """Delete every binding ``selection`` selects; return them (a storage call)."""
    deleted: list[AclBinding] = []
    for binding in store.list_acls():
        if selection.selects(binding):
            deleted.extend(store.delete_acls(AclFilter(
                principal=binding.principal, operation=binding.operation,
                resource_type=binding.resource_type, resource_name=binding.resource_name,
                pattern_type=binding.pattern_type, permission=binding.permission,
                host=binding.host)))
    return deleted


# --- filters ----------------------------------------------------------------------------------


class Selection:
    """A DescribeAcls request or a DeleteAcls filter, decoded: None fields match anything."""

    def __init__(self, resource_type: ResourceType | None, resource_name: str | None,
                 pattern: PatternType | int | None, principal: str | None, host: str | None,
                 operation: AclOperation | None, permission: AclPermission | None) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        self.pattern = pattern  # a PatternType, MATCH, or None (ANY)
        self.principal = principal
        self.host = host
        self.operation = operation
        self.permission = permission

    @classmethod
    def of(cls, wire: Any) -> Selection:
        """Decode the filter fields; InvalidArgumentError for codes that select nothing."""
        pattern: PatternType | int | None = None
        if wire.pattern_type_filter == MATCH:
            pattern = MATCH
        elif wire.pattern_type_filter != ANY:
            pattern = _concrete(_PATTERN_TYPES, wire.pattern_type_filter, "pattern type")
        return cls(
            resource_type=_any_or(_RESOURCE_TYPES, wire.resource_type_filter, "resource type"),
            resource_name=wire.resource_name_filter, pattern=pattern,
            principal=wire.principal_filter, host=wire.host_filter,
            operation=_any_or(_OPERATIONS, wire.operation, "operation"),
            permission=_any_or(_PERMISSIONS, wire.permission_type, "permission type"))

    def selects(self, binding: AclBinding) -> bool:
        if self.resource_type is not None and binding.resource_type != self.resource_type:
            return False
        if not self._name_selects(binding):
            return False
        return all(wanted is None or wanted == actual for wanted, actual in (
            (self.principal, binding.principal), (self.host, binding.host),
            (self.operation, binding.operation), (self.permission, binding.permission)))

    def _name_selects(self, binding: AclBinding) -> bool:
        name = self.resource_name
        if self.pattern == MATCH:
            if name is None:
                return True
            if binding.pattern_type == PatternType.LITERAL:
                return binding.resource_name in (name, WILDCARD)
            return name.startswith(binding.resource_name)
        if self.pattern is not None and binding.pattern_type != self.pattern:
            return False
        return name is None or binding.resource_name == name


def _any_or(codes: dict[int, Any], code: int, what: str) -> Any:
    return None if code == ANY else _concrete(codes, code, what)


def _sort_key(key: tuple[ResourceType, str, PatternType]) -> tuple[int, str, int]:
    return RESOURCE_TYPE_CODES[key[0]], key[1], PATTERN_TYPE_CODES[key[2]]


def _code(exc: LogstoreError) -> int:
    return INVALID_REQUEST if isinstance(exc, InvalidArgumentError) else error_code(exc)


async def _may(ctx: RequestContext, operation: AclOperation) -> bool:
    return await ctx.authorize(ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME, operation)

