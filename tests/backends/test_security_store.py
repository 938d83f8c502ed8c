"""Users' SCRAM credentials and ACLs of the metadata store, against every backend (SQLite and,
when LOGSTORE_TEST_POSTGRES_URL is set, PostgreSQL): a user's credentials written as a whole,
duplicates refused, ACLs added idempotently, listed and deleted by filter, validation, races,
and migration 0008 up and down."""

from __future__ import annotations

from typing import Any

import pytest
from logstore.backends import migrate, sql_metadata
from logstore.backends.metadata import MetadataStore
from logstore.backends.security_records import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
    ScramCredential,
    ScramMechanism,
)
from logstore.backends.sql_metadata import SqlMetadataStore
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, text

from logstore.errors import (
    DuplicateResourceError,
    InvalidArgumentError,
    MetadataStoreError,
    StaleVersionError,
)

SHA256, SHA512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512


def credential(user: str, mechanism: ScramMechanism = SHA256, *, key: int = 1,
               iterations: int = 4096) -> ScramCredential:
    size = mechanism.digest_size
    return ScramCredential(user, mechanism, bytes([key]) * 16, iterations, bytes([key]) * size,
                           bytes([key + 1]) * size, created_ms=1_700_000_000_000)


def binding(principal: str = "User:alice", operation: AclOperation = AclOperation.READ,
            name: str = "orders", **fields: Any) -> AclBinding:
    return AclBinding(principal, operation, fields.pop("resource_type", ResourceType.TOPIC),
                      name, **fields)


def test_the_store_still_implements_the_protocol(store: SqlMetadataStore) -> None:
    assert isinstance(store, MetadataStore)


# --- SCRAM credentials -----------------------------------------------------------------------


def test_credentials_round_trip(store: SqlMetadataStore) -> None:
    both = [credential("alice", SHA256), credential("alice", SHA512)]
    store.put_scram_credentials("alice", both)

    assert store.get_scram_credential("alice", SHA512) == both[1]
    assert store.get_scram_credential("alice", SHA256) == both[0]
    assert store.get_scram_credential("bob", SHA256) is None
    assert store.list_scram_credentials() == both
    assert store.list_scram_credentials("bob") == []


def test_a_user_is_created_once(store: SqlMetadataStore) -> None:
    store.put_scram_credentials("alice", [credential("alice")])
    with pytest.raises(DuplicateResourceError, match="alice"):
        store.put_scram_credentials("alice", [credential("alice", SHA512)])
    assert [c.mechanism for c in store.list_scram_credentials("alice")] == [SHA256]


def test_replacing_drops_every_old_credential(store: SqlMetadataStore) -> None:
    store.put_scram_credentials("alice", [credential("alice", SHA256),
                                          credential("alice", SHA512)])
    store.put_scram_credentials("alice", [credential("alice", SHA512, key=7)], replace=True)

    assert store.list_scram_credentials("alice") == [credential("alice", SHA512, key=7)]
    assert store.get_scram_credential("alice", SHA256) is None, "no old password left"


def test_delete_returns_what_it_deleted(store: SqlMetadataStore) -> None:
    store.put_scram_credentials("alice", [credential("alice")])
    store.put_scram_credentials("bob", [credential("bob")])

    assert store.delete_scram_credentials("alice") == [credential("alice")]
    assert store.delete_scram_credentials("alice") == []
    assert [c.user for c in store.list_scram_credentials()] == ["bob"]


@pytest.mark.parametrize("credentials", [
    [],
    [credential("alice"), credential("alice")],
    [credential("bob")],
])
def test_bad_credential_sets_are_refused(store: SqlMetadataStore, credentials: list[Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        store.put_scram_credentials("alice", credentials)
    assert store.list_scram_credentials() == []


def test_credential_values_are_validated() -> None:
    with pytest.raises(InvalidArgumentError, match="iterations"):
        credential("alice", iterations=1000)
    with pytest.raises(InvalidArgumentError, match="user name"):
        credential("")
    with pytest.raises(InvalidArgumentError, match="stored_key"):
        ScramCredential("alice", SHA512, b"s" * 16, 4096, b"k" * 32, b"k" * 64)


def test_the_database_refuses_weak_iterations(store_url: str) -> None:
    SqlMetadataStore(store_url).close()
    engine = sql_metadata.create_metadata_engine(store_url)
    try:
        with pytest.raises(sa_exc.IntegrityError), engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO scram_credentials (user_name, mechanism, salt, iterations, "
                "stored_key, server_key, created_ms) VALUES ('a', 'SCRAM-SHA-256', :b, 10, :b, "
                ":b, 0)"), {"b": b"x" * 32})
    finally:
        engine.dispose()


def test_concurrent_creations_of_one_user_have_one_winner(store: SqlMetadataStore,
                                                          race) -> None:
    results = race(8, lambda i: store.put_scram_credentials(
        "alice", [credential("alice", key=i + 1)]))
    winners = [r for r in results if r is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, DuplicateResourceError | StaleVersionError)
               for r in results if r is not None)
    assert len(store.list_scram_credentials("alice")) == 1


def test_a_damaged_row_is_a_store_error(store: SqlMetadataStore, store_url: str) -> None:
    store.put_scram_credentials("alice", [credential("alice")])
    engine = sql_metadata.create_metadata_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE scram_credentials SET stored_key = :k"), {"k": b"short"})
    finally:
        engine.dispose()
    with pytest.raises(MetadataStoreError, match="damaged SCRAM credential"):
        store.get_scram_credential("alice", SHA256)


# --- ACLs --------------------------------------------------------------------------------------


def test_acls_are_added_once_and_listed_sorted(store: SqlMetadataStore) -> None:
    group = binding("User:bob", AclOperation.READ, "billing", resource_type=ResourceType.GROUP)
    prefixed = binding(name="tmp-", pattern_type=PatternType.PREFIXED,
                       permission=AclPermission.DENY, operation=AclOperation.ALL)
    added = store.add_acls([binding(), group, binding(), prefixed])

    assert added == [binding(), group, prefixed]
    assert store.add_acls([binding()]) == []
    assert store.list_acls() == [group, binding(), prefixed]


def test_filters_select_by_every_field(store: SqlMetadataStore) -> None:
    everything = [binding(), binding("User:bob"), binding(operation=AclOperation.WRITE),
                  binding(host="10.0.0.1"), binding(name="orders",
                                                    pattern_type=PatternType.PREFIXED),
                  binding(permission=AclPermission.DENY),
                  binding(name="kafka-cluster", resource_type=ResourceType.CLUSTER)]
    store.add_acls(everything)

    assert store.list_acls(AclFilter(principal="User:bob")) == [binding("User:bob")]
    assert store.list_acls(AclFilter(host="10.0.0.1")) == [binding(host="10.0.0.1")]
    assert store.list_acls(AclFilter(resource_type=ResourceType.CLUSTER,
                                     resource_name="kafka-cluster")) == [everything[-1]]
    assert len(store.list_acls(AclFilter(resource_name="orders"))) == 6
    assert store.list_acls(AclFilter(pattern_type=PatternType.PREFIXED)) == [everything[4]]
    matching = AclFilter(operation=AclOperation.READ, permission=AclPermission.ALLOW,
                         host="*", pattern_type=PatternType.LITERAL,
                         resource_type=ResourceType.TOPIC)
    assert store.list_acls(matching) == [binding(), binding("User:bob")]
    assert all(matching.matches(b) for b in store.list_acls(matching))


def test_delete_by_filter_returns_the_deleted(store: SqlMetadataStore) -> None:
    store.add_acls([binding(), binding(operation=AclOperation.WRITE), binding("User:bob")])

    deleted = store.delete_acls(AclFilter(principal="User:alice"))

    assert deleted == [binding(), binding(operation=AclOperation.WRITE)]
    assert store.list_acls() == [binding("User:bob")]
    assert store.delete_acls(AclFilter(principal="User:alice")) == []


@pytest.mark.parametrize(("fields", "message"), [
    ({"principal": "alice"}, "TYPE:NAME"),
    ({"name": ""}, "resource name"),
    ({"name": "x", "resource_type": ResourceType.CLUSTER}, "kafka-cluster"),
    ({"name": "*", "pattern_type": PatternType.PREFIXED}, "prefixed"),
    ({"host": "example.com"}, "IP address"),
    ({"operation": "READ"}, "AclOperation"),
])
def test_bad_bindings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        binding(**fields)


# --- the migration -----------------------------------------------------------------------------


def test_migration_0008_creates_the_tables_and_downgrades(store_url: str) -> None:
    from alembic import command

    with SqlMetadataStore(store_url) as store:
        store.put_scram_credentials("alice", [credential("alice")])
        store.add_acls([binding()])
    engine = sql_metadata.create_metadata_engine(store_url)
    try:
        inspector = inspect(engine)
        assert inspector.get_pk_constraint("scram_credentials")["constrained_columns"] == [
            "user_name", "mechanism"]
        assert {c["name"] for c in inspector.get_check_constraints("scram_credentials")} == {
            "ck_scram_credentials_iterations_minimum", "ck_scram_credentials_mechanism_known"}
        with migrate._process_lock, sql_metadata.begin_write(engine) as conn:
            command.downgrade(migrate._alembic_config(conn), "0007")
        assert migrate.current_revision(engine) == "0007"
        assert not {"scram_credentials", "acls"} & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert migrate.upgrade(store_url).changed
    with SqlMetadataStore(store_url) as store:
        assert store.list_scram_credentials() == [] and store.list_acls() == []
