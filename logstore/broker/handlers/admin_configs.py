"""DescribeConfigs (v1-v2), AlterConfigs (v0-v1) and IncrementalAlterConfigs (v0-v1).

Two resource types are served: topics (2) and this broker (4); any other type is answered
INVALID_REQUEST for that resource.

Topics: every key of ``logstore.config.TOPIC_CONFIG_KEYS`` (Kafka's dotted names), with its
effective value; an override set on the topic has source DYNAMIC_TOPIC_CONFIG, any other value
DEFAULT_CONFIG (logstore's built-in default). None is read-only or sensitive. Synonyms (when
asked for) are that one source: there are no broker-level topic defaults (Kafka's ``log.*``
synonyms), and a second synonym of the same name would shadow the first in clients that key
synonyms by name (confluent-kafka).
AlterConfigs replaces the topic's overrides with the configs given (Kafka's non-incremental
semantics: a key left out goes back to its default); IncrementalAlterConfigs applies SET,
DELETE, and APPEND/SUBTRACT for list configs (``cleanup.policy``), as Kafka does: APPEND and
SUBTRACT start from the override or else the default. Both go through
``Log.update_topic_config``: the whole resulting set is validated (INVALID_CONFIG with the
reason) and written by compare-and-swap, so concurrent changes never lose each other.
``validate_only`` checks and writes nothing.

The broker: the :class:`~logstore.broker.server.BrokerConfig` values under Kafka's names, all
read-only (set when ``logstore serve`` starts): STATIC_BROKER_CONFIG when set, DEFAULT_CONFIG
when left at the default. A field added to ``BrokerConfig`` is described once it is added to
:func:`broker_config_entries` (secrets marked sensitive: their values are never sent). The
resource name is the broker id; "" (the cluster-wide dynamic defaults) has no configs. Altering
a broker's configs is refused with INVALID_REQUEST, as Kafka refuses static configs.

Malformed alterations (a resource given twice, a config key given twice, a null value other
than for DELETE, an unknown operation) get INVALID_REQUEST for their resource, as in Kafka.

Authorization, as Kafka's ``KafkaApis`` (per resource; a refused resource is neither described
nor changed): DescribeConfigs needs DESCRIBE_CONFIGS, AlterConfigs and IncrementalAlterConfigs
ALTER_CONFIGS, on the topic for a topic (else TOPIC_AUTHORIZATION_FAILED) and on the cluster
for a broker (else CLUSTER_AUTHORIZATION_FAILED). Alterations are checked after the malformed
ones are refused, as Kafka's preprocessing does; other resource types stay INVALID_REQUEST.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logstore.admin import validate_topic_name
from logstore.broker.auth import CLUSTER_RESOURCE_NAME, AclOperation, ResourceType
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, build_in, response_module
from logstore.broker.handlers.common import error_code, error_message
from logstore.broker.server import BrokerConfig
from logstore.config import TOPIC_CONFIG_KEYS
from logstore.errors import (
    AuthorizationError,
    InvalidArgumentError,
    InvalidConfigurationError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from logstore.protocol.apis import ApiKey, VersionRange

if TYPE_CHECKING:
    from logstore.broker.server import BrokerServices

DESCRIBE_CONFIGS_VERSIONS = VersionRange(1, 2)
ALTER_CONFIGS_VERSIONS = VersionRange(0, 1)
INCREMENTAL_ALTER_CONFIGS_VERSIONS = VersionRange(0, 1)

#: ConfigResource.Type
TOPIC, BROKER = 2, 4


class ConfigSource(enum.IntEnum):
    """Kafka's DescribeConfigsResponse.ConfigSource values used here."""

    DYNAMIC_TOPIC_CONFIG = 1
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


class AlterOp(enum.IntEnum):
    """IncrementalAlterConfigs operations (AlterConfigOp.OpType)."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


_OPERATIONS = frozenset(int(op) for op in AlterOp)


@dataclass(frozen=True, slots=True)
class ConfigSynonym:
    """Where a config's value may come from, highest precedence first."""

    name: str
    value: str | None
    source: int


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One described config."""

    name: str
    value: str | None
    source: int
    read_only: bool
    sensitive: bool
    synonyms: tuple[ConfigSynonym, ...]


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.DESCRIBE_CONFIGS, DESCRIBE_CONFIGS_VERSIONS, describe_configs)
    dispatcher.register(ApiKey.ALTER_CONFIGS, ALTER_CONFIGS_VERSIONS, alter_configs)
    dispatcher.register(ApiKey.INCREMENTAL_ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS_VERSIONS,
                        incremental_alter_configs)


# --- describing -------------------------------------------------------------------------------


def topic_config_entries(overrides: Mapping[str, str],
                         names: Collection[str] | None = None) -> list[ConfigEntry]:
    """Every topic config (or those in ``names``), sorted by name, with the value in effect:
    the topic's override, else the default."""
    entries = []
    for name, key in sorted(TOPIC_CONFIG_KEYS.items()):
        if names and name not in names:
            continue
        if name in overrides:
            value, source = overrides[name], ConfigSource.DYNAMIC_TOPIC_CONFIG
        else:
            value, source = key.default, ConfigSource.DEFAULT_CONFIG
        entries.append(ConfigEntry(name=name, value=value, source=source, read_only=False,
                                   sensitive=False,
                                   synonyms=(ConfigSynonym(name, value, source),)))
    return entries


def broker_config_entries(services: BrokerServices) -> list[ConfigEntry]:
    """The broker's settings under Kafka's names, sorted by name (all read-only)."""
    config, default = services.config, BrokerConfig()

    def entry(name: str, value: object, *fields: str, sensitive: bool = False) -> ConfigEntry:
        text = None if value is None or sensitive else (
            str(value).lower() if isinstance(value, bool) else str(value))
        at_default = all(getattr(config, f) == getattr(default, f) for f in fields)
        source = ConfigSource.DEFAULT_CONFIG if at_default else ConfigSource.STATIC_BROKER_CONFIG
        return ConfigEntry(name=name, value=text, source=source, read_only=True,
                           sensitive=sensitive, synonyms=(ConfigSynonym(name, text, source),))

    entries = [
        entry("node.id", config.broker_id, "broker_id"),
        entry("broker.id", config.broker_id, "broker_id"),
        entry("broker.rack", config.rack, "rack"),
        entry("listeners", _listener(config.security_protocol, config.listen_host,
                                     config.listen_port), "listen_host", "listen_port"),
        entry("advertised.listeners", _listener(config.security_protocol, *services.advertised),
              "advertised_host", "advertised_port"),
        entry("security.inter.broker.protocol", config.security_protocol, "security_protocol"),
        entry("socket.request.max.bytes", config.max_request_bytes, "max_request_bytes"),
        entry("max.connections", config.max_connections, "max_connections"),
        entry("connections.max.idle.ms", config.idle_timeout_ms, "idle_timeout_ms"),
        entry("auto.create.topics.enable", config.auto_create_topics, "auto_create_topics"),
        entry("num.partitions", config.num_partitions, "num_partitions"),
        entry("num.io.threads", config.io_threads, "io_threads"),
        entry("ssl.keystore.type", "PEM"),
        entry("ssl.keystore.location", config.tls_cert_path, "tls_cert_path"),
        entry("ssl.key.password", config.tls_key_password, "tls_key_password", sensitive=True),
        entry("ssl.truststore.location", config.tls_client_ca_path, "tls_client_ca_path"),
        entry("ssl.client.auth", config.tls_client_auth, "tls_client_auth"),
        entry("sasl.enabled.mechanisms", ",".join(config.sasl_mechanisms), "sasl_mechanisms"),
        entry("sasl.server.max.receive.size", config.sasl_max_receive_bytes,
              "sasl_max_receive_bytes"),
        entry("super.users", ";".join(config.super_users) or None, "super_users"),
        entry("allow.everyone.if.no.acl.found", config.allow_everyone_if_no_acl_found,
              "allow_everyone_if_no_acl_found"),
    ]
    return sorted(entries, key=lambda e: e.name)


def _listener(security_protocol: str, host: str, port: int) -> str:
    return f"{security_protocol}://{f'[{host}]' if ':' in host else host}:{port}"


async def _refusal(ctx: RequestContext, resource_type: int, name: str,
                   operation: AclOperation) -> AuthorizationError | None:
    """Why the principal may not do ``operation`` (DESCRIBE_CONFIGS, ALTER_CONFIGS) on a config
    resource: on the topic for a topic, on the cluster for a broker; None if it may (or the
    resource type is not served, which is answered as such)."""
    if resource_type == TOPIC:
        if await ctx.authorize(ResourceType.TOPIC, name, operation):
            return None
        return TopicAuthorizationFailedError(
            f"{operation.value} on topic {name!r} is not authorized")
    if resource_type == BROKER:
        if await ctx.authorize(ResourceType.CLUSTER, CLUSTER_RESOURCE_NAME, operation):
            return None
        return AuthorizationError(f"{operation.value} on the cluster is not authorized")
    return None


async def _refused(exc: BaseException) -> BaseException:
    """A refusal as a resource's outcome (awaited alongside the others)."""
    return exc


async def describe_configs(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.DESCRIBE_CONFIGS, ctx.api_version)
    resources = list(request.resources)
    refusals = [await _refusal(ctx, r.resource_type, r.resource_name,
                               AclOperation.DESCRIBE_CONFIGS) for r in resources]
    outcomes = await asyncio.gather(*(
        _refused(refused) if refused is not None
        else ctx.run(_describe, ctx.services, r.resource_type, r.resource_name,
                     r.configuration_keys)
        for r, refused in zip(resources, refusals, strict=True)))
    results = []
    for resource, outcome in zip(resources, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            code, message, configs = error_code(outcome), error_message(outcome), ()
        else:
            code, message = 0, None
            configs = tuple(_described(module, e, request.include_synonyms) for e in outcome)
        results.append(build_in(
            module, "DescribeConfigsResult", error_code=code, error_message=message,
            resource_type=resource.resource_type, resource_name=resource.resource_name,
            configs=configs))
    return build(module.DescribeConfigsResponse, throttle_time_ms=0, results=tuple(results))


def _described(module: Any, entry: ConfigEntry, include_synonyms: bool) -> Any:
    synonyms = tuple(
        build_in(module, "DescribeConfigsSynonym", name=s.name, value=s.value, source=s.source)
        for s in entry.synonyms) if include_synonyms else ()
    return build_in(module, "DescribeConfigsResourceResult", name=entry.name, value=entry.value,
                    read_only=entry.read_only,
                    is_default=entry.source == ConfigSource.DEFAULT_CONFIG,
                    config_source=entry.source, is_sensitive=entry.sensitive,
                    synonyms=synonyms)


def _describe(services: BrokerServices, resource_type: int, name: str,
              keys: Iterable[str] | None) -> list[ConfigEntry] | BaseException:
    """One resource's configs (all of them when ``keys`` is null or empty, as in Kafka)."""
    try:
        wanted = set(keys or ())
        if resource_type == TOPIC:
            validate_topic_name(name)
            record = services.log.metadata.get_topic(name)
            if record is None:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            return topic_config_entries(record.configs, wanted)
        if resource_type == BROKER:
            if name == "":
                return []  # no cluster-wide dynamic broker defaults exist
            _check_broker_id(services, name)
            return [e for e in broker_config_entries(services) if not wanted or e.name in wanted]
        raise _unsupported(resource_type)
    except Exception as exc:  # noqa: BLE001 - this resource's error code
        return exc


def _check_broker_id(services: BrokerServices, name: str) -> None:
    broker_id = services.config.broker_id
    try:
        requested = int(name)
    except ValueError:
        raise InvalidArgumentError(f"broker id must be an integer, got {name!r}") from None
    if requested != broker_id:
        raise InvalidArgumentError(
            f"unexpected broker id {requested}: this is broker {broker_id}")


def _unsupported(resource_type: int) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"resource type {resource_type} is not supported: configs are served for topics "
        f"({TOPIC}) and brokers ({BROKER})")


# --- altering ---------------------------------------------------------------------------------

#: One requested change: (config name, operation, value).
Change = tuple[str, int, str | None]


async def alter_configs(ctx: RequestContext, request: Any) -> Any:
    """Non-incremental: the configs given become the topic's overrides."""
    module = response_module(ApiKey.ALTER_CONFIGS, ctx.api_version)
    return build(module.AlterConfigsResponse, throttle_time_ms=0, responses=await _alter(
        ctx, module, request, incremental=False))


async def incremental_alter_configs(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.INCREMENTAL_ALTER_CONFIGS, ctx.api_version)
    return build(module.IncrementalAlterConfigsResponse, throttle_time_ms=0,
                 responses=await _alter(ctx, module, request, incremental=True))


async def _alter(ctx: RequestContext, module: Any, request: Any,
                 *, incremental: bool) -> tuple[Any, ...]:
    resources = list(request.resources)
    keys = [(r.resource_type, r.resource_name) for r in resources]
    repeated = {key for key in keys if keys.count(key) > 1}
    refusals = [await _refusal(ctx, r.resource_type, r.resource_name, AclOperation.ALTER_CONFIGS)
                for r in resources]
    outcomes = await asyncio.gather(*(
        ctx.run(_alter_resource, ctx.services, r.resource_type, r.resource_name,
                [(c.name, c.config_operation if incremental else AlterOp.SET, c.value)
                 for c in r.configs],
                incremental, request.validate_only, key in repeated, refused)
        for r, key, refused in zip(resources, keys, refusals, strict=True)))
    return tuple(
        build_in(module, "AlterConfigsResourceResponse",
                 error_code=0 if outcome is None else error_code(outcome),
                 error_message=None if outcome is None else error_message(outcome),
                 resource_type=resource.resource_type, resource_name=resource.resource_name)
        for resource, outcome in zip(resources, outcomes, strict=True))


def _alter_resource(services: BrokerServices, resource_type: int, name: str,
                    changes: list[Change], incremental: bool, validate_only: bool,
                    repeated: bool, refused: AuthorizationError | None) -> BaseException | None:
    """Apply (or only check) one resource's changes; the error instead of raising it
    (``refused``: the principal may not alter it, answered once the request is known to be
    well-formed)."""
    try:
        if repeated:
            raise InvalidArgumentError("each resource must appear at most once in a request")
        _check_changes(changes)
        if refused is not None:
            raise refused
        if resource_type == TOPIC:
            edit = _incremental_edit(changes) if incremental else _replacement(changes)
            services.log.update_topic_config(name, edit, validate_only=validate_only)
            return None
        if resource_type == BROKER:
            if name != "":
                _check_broker_id(services, name)
            if changes:
                raise InvalidArgumentError(
                    "broker configs are read-only (set when the broker starts); cannot change "
                    + ", ".join(sorted({c[0] for c in changes})))
            return None
        raise _unsupported(resource_type)
    except Exception as exc:  # noqa: BLE001 - this resource's error code
        return exc


def _check_changes(changes: list[Change]) -> None:
    names = [c[0] for c in changes]
    if len(set(names)) != len(names):
        raise InvalidArgumentError("a config key is given more than once")
    for name, op, value in changes:
        if op not in _OPERATIONS:
            raise InvalidArgumentError(f"unknown config operation {op} for {name!r}")
        if value is None and op != AlterOp.DELETE:
            raise InvalidArgumentError(f"null value not supported for {name!r}")


def _replacement(changes: list[Change]) -> Callable[[Mapping[str, str]], Mapping[str, object]]:
    new = {name: value for name, _, value in changes}
    return lambda _current: new


def _incremental_edit(
    changes: list[Change],
) -> Callable[[Mapping[str, str]], Mapping[str, object]]:
    for name, op, _ in changes:
        key = TOPIC_CONFIG_KEYS.get(name)
        if key is None:
            raise InvalidConfigurationError(f"unknown topic config {name!r}")
        if op in (AlterOp.APPEND, AlterOp.SUBTRACT) and not key.list_valued:
            raise InvalidConfigurationError(
                f"config value {AlterOp(op).name.lower()} is not allowed for config key {name}: "
                "it is not a list")

    def edit(current: Mapping[str, str]) -> Mapping[str, object]:
        result: dict[str, object] = dict(current)
        for name, op, value in changes:
            if op == AlterOp.SET:
                result[name] = value
            elif op == AlterOp.DELETE:
                result.pop(name, None)
            else:
                items = _items(current.get(name, TOPIC_CONFIG_KEYS[name].default))
                given = _items(value or "")
                if op == AlterOp.APPEND:
                    items += [item for item in given if item not in items]
                else:
                    items = [item for item in items if item not in given]
                result[name] = ",".join(items)
        return result

    return edit


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
