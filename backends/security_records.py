"""Users and ACLs as the metadata store keeps them: value types shared by the store, the broker
(``logstore.broker.auth``) and the CLI (``logstore users``, ``logstore acls``).

SCRAM credentials (RFC 5802 and 7677, as Kafka stores them): a user has one
:class:`ScramCredential` per mechanism, holding the salt, the iteration count and the two keys
derived from the salted password (``StoredKey = H(HMAC(SaltedPassword, "Client Key"))`` and
``ServerKey = HMAC(SaltedPassword, "Server Key")``). The password itself is never stored: the
keys let the broker check a SCRAM proof, and a PLAIN password by deriving them again.

ACLs (Kafka's simple ACLs): an :class:`AclBinding` allows or denies one principal one
operation on one resource (a topic, a group, the cluster or a transactional id, named
literally, ``*`` for all, or by prefix), from one host (``*``: any). Bindings have no identity
beyond their fields: adding one twice keeps one. :class:`AclFilter` selects bindings for
listing and deleting (a field left None matches any value).

Values only: validation raises :class:`~logstore.errors.InvalidArgumentError`; nothing here
reads a clock or touches a database. Immutable, so safe to share between threads.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import TypeVar

from logstore.errors import InvalidArgumentError

E = TypeVar("E", bound=enum.Enum)

#: Longest user name (the column is VARCHAR(255)).
USER_NAME_MAX_LENGTH = 255
#: Longest principal (``User:<name>``; a certificate's distinguished name can be long).
PRINCIPAL_MAX_LENGTH = 1024
#: Longest resource name (topics: 249, groups and transactional ids: 255).
RESOURCE_NAME_MAX_LENGTH = 255
#: Kafka's bounds on SCRAM iterations (RFC 7677 asks for at least 4096).
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384
DEFAULT_ITERATIONS = 8192
#: The one name of the cluster resource (Kafka's ``kafka-cluster``).
CLUSTER_RESOURCE_NAME = "kafka-cluster"
#: A literal resource name, principal or host matching every one.
WILDCARD = "*"
#: The principal of every user (``User:*``).
WILDCARD_PRINCIPAL = "User:*"


class ScramMechanism(str, enum.Enum):
    """The SCRAM mechanisms (Kafka's names); the value is the SASL mechanism name."""

    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"

    @property
    def hash_name(self) -> str:
        """The ``hashlib`` name of the mechanism's hash function."""
        return "sha256" if self is ScramMechanism.SCRAM_SHA_256 else "sha512"

    @property
    def digest_size(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    @classmethod
    def parse(cls, name: str) -> ScramMechanism:
        """The mechanism named ``name`` (any case); InvalidArgumentError otherwise."""
        for mechanism in cls:
            if mechanism.value == name.upper():
                return mechanism
        raise InvalidArgumentError(
            f"unknown SCRAM mechanism {name!r}: expected one of "
            f"{', '.join(m.value for m in cls)}")


class ResourceType(str, enum.Enum):
    """What an ACL protects (Kafka's resource types)."""

    TOPIC = "TOPIC"
    GROUP = "GROUP"
    CLUSTER = "CLUSTER"
    TRANSACTIONAL_ID = "TRANSACTIONAL_ID"


class PatternType(str, enum.Enum):
    """How an ACL's resource name matches: the name itself (``*``: all), or a prefix."""

    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


class AclOperation(str, enum.Enum):
    """Kafka's ACL operations. ``ALL`` matches every operation; an allowed READ, WRITE,
    DELETE or ALTER implies DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS."""

    ALL = "ALL"
    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DELETE = "DELETE"
    ALTER = "ALTER"
    DESCRIBE = "DESCRIBE"
    CLUSTER_ACTION = "CLUSTER_ACTION"
    DESCRIBE_CONFIGS = "DESCRIBE_CONFIGS"
    ALTER_CONFIGS = "ALTER_CONFIGS"
    IDEMPOTENT_WRITE = "IDEMPOTENT_WRITE"


class AclPermission(str, enum.Enum):
    """Whether an ACL allows or denies (a matching DENY wins over any ALLOW)."""

    ALLOW = "ALLOW"
    DENY = "DENY"


def parse_enum(cls: type[E], text: str, what: str) -> E:
    """The member of ``cls`` named ``text`` (any case, ``-`` for ``_``)."""
    key = text.strip().upper().replace("-", "_")
    try:
        return cls[key]
    except KeyError:
        names = ", ".join(m.name for m in cls)
        raise InvalidArgumentError(f"unknown {what} {text!r}: expected one of {names}") from None


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """One user's SCRAM credential for one mechanism (never the password; see the module
    docstring). ``created_ms`` is when it was made (the caller's clock)."""

    user: str
    mechanism: ScramMechanism
    salt: bytes = field(repr=False)
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    created_ms: int = 0

    def __post_init__(self) -> None:
        check_user_name(self.user)
        if not isinstance(self.mechanism, ScramMechanism):
            raise InvalidArgumentError(f"mechanism must be a ScramMechanism, got "
                                       f"{self.mechanism!r}")
        if (isinstance(self.iterations, bool) or not isinstance(self.iterations, int)
                or not MIN_ITERATIONS <= self.iterations <= MAX_ITERATIONS):
            raise InvalidArgumentError(f"SCRAM iterations must be {MIN_ITERATIONS} to "
                                       f"{MAX_ITERATIONS}, got {self.iterations!r}")
        size = self.mechanism.digest_size
        if not isinstance(self.salt, bytes) or not 8 <= len(self.salt) <= 128:
            raise InvalidArgumentError("a SCRAM salt must be 8 to 128 bytes")
        for name in ("stored_key", "server_key"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise InvalidArgumentError(f"{name} must be {size} bytes for "
                                           f"{self.mechanism.value}")
        if (isinstance(self.created_ms, bool) or not isinstance(self.created_ms, int)
                or self.created_ms < 0):
            raise InvalidArgumentError(f"created_ms must be a non-negative int, got "
                                       f"{self.created_ms!r}")


@dataclass(frozen=True, slots=True)
class AclBinding:
    """``permission`` ``principal`` ``operation`` on the resource ``resource_type``
    ``resource_name`` (matched as ``pattern_type`` says) from ``host``.

    ``principal`` is ``TYPE:NAME`` (``User:alice``, ``User:CN=alice,O=Example`` for a
    client certificate, ``User:*`` for everyone); ``host`` an IP address or ``*``. The cluster
    resource is named ``kafka-cluster``.
    """

    principal: str
    operation: AclOperation
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType = PatternType.LITERAL
    permission: AclPermission = AclPermission.ALLOW
    host: str = WILDCARD

    def __post_init__(self) -> None:
        check_principal(self.principal)
        _check_member(AclOperation, self.operation, "operation")
        _check_member(ResourceType, self.resource_type, "resource_type")
        _check_member(PatternType, self.pattern_type, "pattern_type")
        _check_member(AclPermission, self.permission, "permission")
        name = self.resource_name
        if not isinstance(name, str) or not 0 < len(name) <= RESOURCE_NAME_MAX_LENGTH:
            raise InvalidArgumentError(f"a resource name must be 1 to "
                                       f"{RESOURCE_NAME_MAX_LENGTH} characters, got {name!r}")
        if self.resource_type is ResourceType.CLUSTER and name != CLUSTER_RESOURCE_NAME:
            raise InvalidArgumentError(f"the cluster resource is named "
                                       f"{CLUSTER_RESOURCE_NAME!r}, got {name!r}")
        if self.pattern_type is PatternType.PREFIXED and name == WILDCARD:
            raise InvalidArgumentError("a prefixed ACL cannot have the name '*' (a literal '*' "
                                       "matches every resource)")
        check_host(self.host)

    def sort_key(self) -> tuple[str, ...]:
        """Resource first, then principal, operation, permission, host (listing order)."""
        return (self.resource_type.value, self.resource_name, self.pattern_type.value,
                self.principal, self.operation.value, self.permission.value, self.host)

    def acl_id(self) -> str:
        """A stable id of the binding (its fields hashed): the store's key, so a binding
        added twice is stored once."""
        text = "\x00".join((self.resource_type.value, self.pattern_type.value,
                            self.resource_name, self.principal, self.host,
                            self.operation.value, self.permission.value))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Selects bindings: each field given must equal the binding's; None matches any."""

    principal: str | None = None
    operation: AclOperation | None = None
    resource_type: ResourceType | None = None
    resource_name: str | None = None
    pattern_type: PatternType | None = None
    permission: AclPermission | None = None
    host: str | None = None

    def matches(self, binding: AclBinding) -> bool:
        return all(
            wanted is None or wanted == getattr(binding, name)
            for name, wanted in (
                ("principal", self.principal), ("operation", self.operation),
                ("resource_type", self.resource_type), ("resource_name", self.resource_name),
                ("pattern_type", self.pattern_type), ("permission", self.permission),
                ("host", self.host)))

    @property
    def matches_everything(self) -> bool:
        return all(getattr(self, name) is None for name in (
            "principal", "operation", "resource_type", "resource_name", "pattern_type",
            "permission", "host"))


def check_user_name(name: object) -> None:
    """A user name is 1 to 255 characters, without control characters."""
    if (not isinstance(name, str) or not 0 < len(name) <= USER_NAME_MAX_LENGTH
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise InvalidArgumentError(f"a user name must be 1 to {USER_NAME_MAX_LENGTH} "
                                   f"printable characters, got {name!r}")


def check_principal(principal: object) -> None:
    """A principal is ``TYPE:NAME`` with both parts non-empty (``User:alice``)."""
    if not isinstance(principal, str) or len(principal) > PRINCIPAL_MAX_LENGTH:
        raise InvalidArgumentError(f"a principal must be a string of at most "
                                   f"{PRINCIPAL_MAX_LENGTH} characters, got {principal!r}")
    kind, sep, name = principal.partition(":")
    if not sep or not kind or not name:
        raise InvalidArgumentError(f"a principal is TYPE:NAME, e.g. User:alice, got "
                                   f"{principal!r}")


def check_host(host: object) -> None:
    """A host is ``*`` or an IP address (as Kafka's ACLs)."""
    if host == WILDCARD:
        return
    try:
        ipaddress.ip_address(host)  # type: ignore[arg-type]
    except ValueError:
        raise InvalidArgumentError(f"an ACL host is '*' or an IP address, got {host!r}") from None


def _check_member(cls: type[enum.Enum], value: object, name: str) -> None:
    if not isinstance(value, cls):
        raise InvalidArgumentError(f"{name} must be a {cls.__name__}, got {value!r}")
