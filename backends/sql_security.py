"""Users' SCRAM credentials and ACLs of :class:`~logstore.backends.sql_metadata.SqlMetadataStore`
(tables ``scram_credentials`` and ``acls``; values in :mod:`.security_records`).

Invariants:

* A user's credentials are written as a whole: :func:`put_scram_credentials` deletes the
  user's rows and inserts the new ones in one transaction, under the user's lock (SQLite's
  write lock; on PostgreSQL an advisory lock keyed by the user name, as groups have), so after a
  password change no mechanism still accepts the old password, and of concurrent creations of
  one user exactly one wins: the others find its rows and get DuplicateResourceError.
* An ACL row's key is a hash of all its fields (``AclBinding.acl_id``): adding a binding that
  exists changes nothing, and the rows always equal the set of bindings added and not deleted.
* Enum values are stored by name; a row with an unknown name is a damaged (or newer)
  database and raises MetadataStoreError.

Every function is thread-safe: each call runs in one transaction on a connection checked out of
the store's pool. Times are the caller's milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

# sql_metadata first, and only as a module (see sql_topics).
from logstore.backends import sql_metadata

# isort: split
from logstore.backends.schema import acls, scram_credentials
from logstore.backends.security_records import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
    ScramCredential,
    ScramMechanism,
    check_user_name,
)
from sqlalchemy import Connection, Row, delete, insert, select, text
from sqlalchemy import exc as sa_exc

from logstore.errors import (
    DuplicateResourceError,
    InvalidArgumentError,
    MetadataStoreError,
    StaleVersionError,
)

if TYPE_CHECKING:
    from logstore.backends.sql_metadata import SqlMetadataStore

# Advisory-lock namespace (the first key of pg_advisory_xact_lock(int, int)) for users; groups
# use 0x4C47 ("LG"), transactional ids 0x4C54 ("LT").
_USER_LOCK_NAMESPACE = 0x4C55  # "LU"


# --- SCRAM credentials -------------------------------------------------------------------------


def put_scram_credentials(
    store: SqlMetadataStore, user: str, credentials: Iterable[ScramCredential], *,
    replace: bool = False,
) -> None:
    """Make ``credentials`` (at least one, at most one per mechanism, all of ``user``) the
    user's whole set. Raises DuplicateResourceError if the user has credentials and not
    ``replace``; InvalidArgumentError for a bad set."""
    check_user_name(user)
    chosen = list(credentials)
    if not chosen:
        raise InvalidArgumentError("a user needs at least one SCRAM credential")
    mechanisms = [c.mechanism for c in chosen]
    if len(set(mechanisms)) != len(mechanisms):
        raise InvalidArgumentError("at most one credential per mechanism")
    for credential in chosen:
        if not isinstance(credential, ScramCredential) or credential.user != user:
            raise InvalidArgumentError(f"every credential must be a ScramCredential of user "
                                       f"{user!r}")
    with store._operation(f"storing the credentials of user {user!r}"):
        try:
            with store._write_engine.begin() as conn:
                _lock(conn, user)
                existing = conn.execute(select(scram_credentials.c.mechanism).where(
                    scram_credentials.c.user_name == user)).first()
                if existing is not None and not replace:
                    raise DuplicateResourceError(f"user {user!r} already exists")
                conn.execute(delete(scram_credentials).where(
                    scram_credentials.c.user_name == user))
                conn.execute(insert(scram_credentials), [
                    {"user_name": c.user, "mechanism": c.mechanism.value, "salt": c.salt,
                     "iterations": c.iterations, "stored_key": c.stored_key,
                     "server_key": c.server_key, "created_ms": c.created_ms}
                    for c in chosen])
        except sa_exc.IntegrityError as exc:
            if not sql_metadata._is_unique_violation(exc):
                raise
            if not replace:
                raise DuplicateResourceError(f"user {user!r} already exists") from None
            raise StaleVersionError(f"the credentials of user {user!r} were changed "
                                    "concurrently; try again") from None


def _lock(conn: Connection, user: str) -> None:
    """Take the user's lock for the rest of the write transaction (SQLite's ``BEGIN
    IMMEDIATE`` already holds the database's write lock)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:user))"),
                     {"namespace": _USER_LOCK_NAMESPACE, "user": user})


def get_scram_credential(
    store: SqlMetadataStore, user: str, mechanism: ScramMechanism
) -> ScramCredential | None:
    """The user's credential for ``mechanism``, or None."""
    check_user_name(user)
    with store._operation(f"reading the credentials of user {user!r}"), \
            store._engine.begin() as conn:
        row = conn.execute(select(scram_credentials).where(
            scram_credentials.c.user_name == user,
            scram_credentials.c.mechanism == ScramMechanism(mechanism).value)).one_or_none()
    return None if row is None else _to_credential(row)


def list_scram_credentials(
    store: SqlMetadataStore, user: str | None = None
) -> list[ScramCredential]:
    """Every credential (of ``user`` only, if given), sorted by user, then mechanism."""
    query = select(scram_credentials)
    if user is not None:
        check_user_name(user)
        query = query.where(scram_credentials.c.user_name == user)
    with store._operation("listing users"), store._engine.begin() as conn:
        rows = conn.execute(query).all()
    return sorted((_to_credential(row) for row in rows),
                  key=lambda c: (c.user, c.mechanism.value))


def delete_scram_credentials(store: SqlMetadataStore, user: str) -> list[ScramCredential]:
    """Delete every credential of ``user``; return what was deleted (empty: no such user)."""
    check_user_name(user)
    with store._operation(f"deleting user {user!r}"), store._write_engine.begin() as conn:
        _lock(conn, user)
        rows = conn.execute(delete(scram_credentials).where(
            scram_credentials.c.user_name == user).returning(*scram_credentials.c)).all()
    return sorted((_to_credential(row) for row in rows), key=lambda c: c.mechanism.value)


def _to_credential(row: Row[Any]) -> ScramCredential:
    try:
        return ScramCredential(
            user=row.user_name, mechanism=ScramMechanism(row.mechanism), salt=bytes(row.salt),
            iterations=row.iterations, stored_key=bytes(row.stored_key),
            server_key=bytes(row.server_key), created_ms=row.created_ms)
    except (ValueError, InvalidArgumentError) as exc:
        raise MetadataStoreError(f"damaged SCRAM credential of user {row.user_name!r} in the "
                                 f"metadata database: {exc}", retriable=False) from None


# --- ACLs --------------------------------------------------------------------------------------


def add_acls(store: SqlMetadataStore, bindings: Iterable[AclBinding]) -> list[AclBinding]:
    """Store ``bindings``; return those that were not stored yet (in the order given)."""
    wanted: dict[str, AclBinding] = {}
    for binding in bindings:
        if not isinstance(binding, AclBinding):
            raise InvalidArgumentError(f"expected an AclBinding, got {binding!r}")
        wanted.setdefault(binding.acl_id(), binding)
    if not wanted:
        return []
    with store._operation("adding ACLs"):
        try:
            with store._write_engine.begin() as conn:
                present = set(conn.execute(select(acls.c.acl_id).where(
                    acls.c.acl_id.in_(list(wanted)))).scalars())
                added = [(acl_id, b) for acl_id, b in wanted.items() if acl_id not in present]
                if added:
                    conn.execute(insert(acls), [_to_row(acl_id, b) for acl_id, b in added])
        except sa_exc.IntegrityError as exc:
            if sql_metadata._is_unique_violation(exc):
                raise StaleVersionError("the same ACLs were added concurrently; try again "
                                        "(adding is idempotent)") from None
            raise
    return [binding for _, binding in added]


def list_acls(store: SqlMetadataStore, acl_filter: AclFilter | None = None) -> list[AclBinding]:
    """The bindings ``acl_filter`` matches (all: None), sorted by resource, then principal."""
    query = select(acls)
    if acl_filter is not None:
        query = query.where(*_conditions(acl_filter))
    with store._operation("listing ACLs"), store._engine.begin() as conn:
        rows = conn.execute(query).all()
    return sorted((_to_binding(row) for row in rows), key=AclBinding.sort_key)


def delete_acls(store: SqlMetadataStore, acl_filter: AclFilter) -> list[AclBinding]:
    """Delete the bindings ``acl_filter`` matches; return them, sorted as :func:`list_acls`."""
    if not isinstance(acl_filter, AclFilter):
        raise InvalidArgumentError(f"expected an AclFilter, got {acl_filter!r}")
    with store._operation("deleting ACLs"), store._write_engine.begin() as conn:
        rows = conn.execute(delete(acls).where(*_conditions(acl_filter))
                            .returning(*acls.c)).all()
    return sorted((_to_binding(row) for row in rows), key=AclBinding.sort_key)


def _conditions(acl_filter: AclFilter) -> list[Any]:
    conditions = []
    for name in ("principal", "operation", "resource_type", "resource_name", "pattern_type",
                 "permission", "host"):
        value = getattr(acl_filter, name)
        if value is not None:
            conditions.append(acls.c[name] == getattr(value, "value", value))
    return conditions


def _to_row(acl_id: str, binding: AclBinding) -> dict[str, str]:
    return {"acl_id": acl_id, "principal": binding.principal,
            "operation": binding.operation.value, "resource_type": binding.resource_type.value,
            "resource_name": binding.resource_name, "pattern_type": binding.pattern_type.value,
            "permission": binding.permission.value, "host": binding.host}


def _to_binding(row: Row[Any]) -> AclBinding:
    try:
        return AclBinding(
            principal=row.principal, operation=AclOperation(row.operation),
            resource_type=ResourceType(row.resource_type), resource_name=row.resource_name,
            pattern_type=PatternType(row.pattern_type),
            permission=AclPermission(row.permission), host=row.host)
    except (ValueError, InvalidArgumentError) as exc:
        raise MetadataStoreError(f"damaged ACL {row.acl_id} in the metadata database: {exc}",
                                 retriable=False) from None
