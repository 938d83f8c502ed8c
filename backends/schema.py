"""The metadata schema as it stands at the newest migration (SQLAlchemy Core tables).

The database schema is owned by the Alembic migrations in ``alembic/versions``; these Table
objects describe the result of applying all of them and are what the queries in
:mod:`logstore.backends.sql_metadata` are written against (and what ``alembic revision
--autogenerate`` compares with). A migration must never import this module: migrations are
frozen snapshots, while this module always shows the newest shape. When you add a migration,
update the tables here in the same change; a test compares the two.

Tables:

``topics``
    One row per topic. ``configs`` is a JSON object of config overrides (string to string,
    Kafka's dotted names); ``version`` is the compare-and-swap counter, 1 on creation and bumped
    by every write.
``metadata_changes``
    Exactly one row (``id`` = 1) whose ``counter`` is bumped in the same transaction as every
    topic write, so readers can poll one cheap row to learn whether anything changed.
``consumer_groups``, ``group_members``, ``committed_offsets``
    Consumer groups (see ``logstore.backends.group_records``): the group row with its state
    machine, one row per member (``protocols`` is a JSON list of ``[name, base64 metadata]``;
    ``assignment`` is opaque bytes) and the group's committed offsets. Written only through
    ``SqlMetadataStore.update_group``, under the group's lock.
``transactions``
    One row per transactional id (see ``logstore.backends.txn_records``): the producer's
    identity, the transaction state machine, ``partitions`` (a JSON list of ``[topic,
    partition]``) and ``pending_offsets`` (a JSON object: group id -> list of ``[topic,
    partition, offset, leader_epoch, metadata, commit_ms]``). Written only through
    ``SqlMetadataStore.update_transaction``, under the transactional id's lock, and deleted
    (expired) by ``delete_transaction`` under the same lock; indexed by state and by
    ``update_ms`` (the search for ids unused for ``transactional.id.expiration.ms``).
``producer_ids``
    Exactly one row (``id`` = 1): the next producer id to hand out, incremented atomically.
``cluster``
    At most one row (``id`` = 0): the cluster id brokers report (Kafka's ``cluster.id``),
    inserted by the first broker that asks (migration 0007).
``brokers``
    One row per registered broker id (see ``logstore.backends.broker_records``): its listener,
    rack, broker epoch (+1 at every registration) and session (``expires_ms``, the database's
    clock); renewed by the live broker, ended (``expires_ms`` = now) when it stops cleanly;
    rows are never deleted, so broker epochs never go back (migration 0010).
``leases``
    One row per named lease (see ``logstore.backends.cleaner_records``; the log cleaner's are
    ``compactor/<topic_id>/<partition>``). ``holder`` is NULL while the lease is released;
    ``epoch`` is the fencing token (1 at the first acquisition, +1 at every acquisition after
    a release or expiry, unchanged by renewals); ``version`` is the compare-and-swap counter,
    bumped by every write. Rows are never deleted, so epochs never go back.
``cleaner_checkpoints``
    How far the log of each partition is clean (Kafka's cleaner-offset-checkpoint), keyed by
    the topic's incarnation id (``topics.topic_id``) and partition, and the earliest delete
    horizon the cleaner left in that log (``delete_horizon_ms``, NULL: none; migration 0006).
    Deleted together with the topic row, in the same transaction.
``remote_segments``
    The tiered-segment manifest (see ``logstore.backends.manifest_records``): one row per
    remote segment (an object in the object store) with its offset range, its object key and
    its state (copy-started, copy-finished or delete-started); ``version`` is the
    compare-and-swap counter. Keyed by a caller-chosen ``segment_id`` and indexed by topic
    incarnation, partition and base offset. Deleted together with the topic row, in the same
    transaction (the objects then become orphans for a cleaner).
``scram_credentials``
    One row per user and SCRAM mechanism (see ``logstore.backends.security_records``): the
    salt, the iteration count (at least 4096), StoredKey and ServerKey; never the password
    (migration 0008). Replaced as a whole per user when a password changes.
``acls``
    One row per ACL binding (principal, resource type, name and pattern type, operation,
    permission, host; enum values stored by name), keyed by ``acl_id``, a hash of those fields,
    so adding a binding twice keeps one row (migration 0008).
"""

from __future__ import annotations

from logstore.backends.broker_records import HOST_MAX_LENGTH, RACK_MAX_LENGTH
from logstore.backends.manifest_records import REMOTE_SEGMENT_STATES
from logstore.backends.security_records import (
    MIN_ITERATIONS,
    PRINCIPAL_MAX_LENGTH,
    RESOURCE_NAME_MAX_LENGTH,
    USER_NAME_MAX_LENGTH,
    ScramMechanism,
)
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

#: Kafka's limit on topic name length.
TOPIC_NAME_MAX_LENGTH = 249

#: Kafka's limit on group id length.
GROUP_ID_MAX_LENGTH = 255

#: The primary key of the single ``metadata_changes`` row.
CHANGES_ROW_ID = 1

#: Kafka's limit on transactional id length.
TRANSACTIONAL_ID_MAX_LENGTH = 255

#: The primary key of the single ``producer_ids`` row.
PRODUCER_IDS_ROW_ID = 1

#: Longest lease name and lease holder.
LEASE_NAME_MAX_LENGTH = 255

# Deterministic constraint names keep future ALTERs (and SQLite batch migrations, which
# recreate tables) able to refer to constraints by name on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A compare-and-swap version that may pass 2**31: BIGINT, declared INTEGER on SQLite, whose
#: INTEGER holds 64 bits already (migration 0009 changes only PostgreSQL).
VERSION_BIGINT = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

topics = Table(
    "topics",
    metadata,
    Column("name", String(TOPIC_NAME_MAX_LENGTH), primary_key=True),
    Column("topic_id", String(36), nullable=False, unique=True),
    Column("partition_count", Integer, nullable=False),
    Column("configs", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("partition_count >= 1", name="partition_count_positive"),
    CheckConstraint("version >= 1", name="version_positive"),
)

metadata_changes = Table(
    "metadata_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("counter", BigInteger, nullable=False),
    CheckConstraint(f"id = {CHANGES_ROW_ID}", name="single_row"),
)

consumer_groups = Table(
    "consumer_groups",
    metadata,
    Column("group_id", String(GROUP_ID_MAX_LENGTH), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("protocol_type", String(64), nullable=False),
    Column("protocol", String(64), nullable=True),
    Column("leader_id", String(GROUP_ID_MAX_LENGTH), nullable=True),
    Column("state_since_ms", BigInteger, nullable=False),
    Column("rebalance_deadline_ms", BigInteger, nullable=False),
    Column("version", VERSION_BIGINT, nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String(GROUP_ID_MAX_LENGTH), nullable=False),
    Column("member_id", String(GROUP_ID_MAX_LENGTH), nullable=False),
    Column("group_instance_id", String(GROUP_ID_MAX_LENGTH), nullable=True),
    Column("client_id", String(GROUP_ID_MAX_LENGTH), nullable=False),
    Column("session_timeout_ms", Integer, nullable=False),
    Column("rebalance_timeout_ms", Integer, nullable=False),
    Column("protocols", Text, nullable=False),
    Column("join_generation", Integer, nullable=False),
    Column("assignment", LargeBinary, nullable=True),
    Column("last_heartbeat_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("group_id", "member_id"),
)

committed_offsets = Table(
    "committed_offsets",
    metadata,
    Column("group_id", String(GROUP_ID_MAX_LENGTH), nullable=False),
    Column("topic", String(TOPIC_NAME_MAX_LENGTH), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("committed_offset", BigInteger, nullable=False),
    Column("leader_epoch", Integer, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("commit_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("group_id", "topic", "partition"),
)

transactions = Table(
    "transactions",
    metadata,
    Column("transactional_id", String(TRANSACTIONAL_ID_MAX_LENGTH), primary_key=True),
    Column("producer_id", BigInteger, nullable=False),
    Column("producer_epoch", Integer, nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("timeout_ms", Integer, nullable=False),
    Column("partitions", Text, nullable=False),
    Column("pending_offsets", Text, nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("update_ms", BigInteger, nullable=False, index=True),
    Column("last_bump", String(16), nullable=False),
    Column("previous_producer_id", BigInteger, nullable=False),
    Column("previous_epoch", Integer, nullable=False),
    Column("next_producer_id", BigInteger, nullable=False),
    Column("version", VERSION_BIGINT, nullable=False),
    CheckConstraint("producer_epoch >= 0 AND producer_epoch <= 32767", name="epoch_range"),
    CheckConstraint("version >= 1", name="version_positive"),
)

producer_ids = Table(
    "producer_ids",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("next_producer_id", BigInteger, nullable=False),
    CheckConstraint(f"id = {PRODUCER_IDS_ROW_ID}", name="single_row"),
)

cluster = Table(
    "cluster",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cluster_id", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("id = 0", name="single_row"),
)

brokers = Table(
    "brokers",
    metadata,
    Column("broker_id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", BigInteger, nullable=False),
    Column("host", String(HOST_MAX_LENGTH), nullable=False),
    Column("port", Integer, nullable=False),
    Column("rack", String(RACK_MAX_LENGTH), nullable=True),
    Column("registered_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    CheckConstraint("broker_id >= 0", name="broker_id_non_negative"),
    CheckConstraint("epoch >= 1", name="epoch_positive"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(LEASE_NAME_MAX_LENGTH), primary_key=True),
    Column("holder", String(LEASE_NAME_MAX_LENGTH), nullable=True),
    Column("epoch", BigInteger, nullable=False),
    Column("acquired_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    CheckConstraint("epoch >= 1", name="epoch_positive"),
    CheckConstraint("version >= 1", name="version_positive"),
)

cleaner_checkpoints = Table(
    "cleaner_checkpoints",
    metadata,
    Column("topic_id", String(36), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("checkpoint_offset", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("delete_horizon_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("topic_id", "partition"),
    CheckConstraint("partition >= 0", name="partition_non_negative"),
    CheckConstraint("checkpoint_offset >= 0", name="offset_non_negative"),
)

remote_segments = Table(
    "remote_segments",
    metadata,
    Column("segment_id", String(32), primary_key=True),
    Column("topic_id", String(36), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("base_offset", BigInteger, nullable=False),
    Column("last_offset", BigInteger, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("object_key", String(1024), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("data_bytes", BigInteger, nullable=False),
    Column("max_timestamp", BigInteger, nullable=False),
    Column("batch_count", Integer, nullable=False),
    Column("aborted_count", Integer, nullable=False),
    Column("leader_epoch", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),
    CheckConstraint("partition >= 0", name="partition_non_negative"),
    CheckConstraint("base_offset >= 0", name="base_offset_non_negative"),
    CheckConstraint("last_offset >= base_offset - 1", name="last_offset_range"),
    CheckConstraint("next_offset > last_offset", name="next_offset_range"),
    CheckConstraint("size_bytes >= data_bytes AND data_bytes >= 0", name="bytes_range"),
    CheckConstraint("version >= 1", name="version_positive"),
    CheckConstraint(
        "state IN (" + ", ".join(f"'{state}'" for state in REMOTE_SEGMENT_STATES) + ")",
        name="state_known",
    ),
    Index("ix_remote_segments_partition_offsets", "topic_id", "partition", "base_offset"),
)

scram_credentials = Table(
    "scram_credentials",
    metadata,
    Column("user_name", String(USER_NAME_MAX_LENGTH), nullable=False),
    Column("mechanism", String(32), nullable=False),
    Column("salt", LargeBinary, nullable=False),
    Column("iterations", Integer, nullable=False),
    Column("stored_key", LargeBinary, nullable=False),
    Column("server_key", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_name", "mechanism"),
    CheckConstraint(f"iterations >= {MIN_ITERATIONS}", name="iterations_minimum"),
    CheckConstraint(
        "mechanism IN (" + ", ".join(f"'{m.value}'" for m in ScramMechanism) + ")",
        name="mechanism_known",
    ),
)

acls = Table(
    "acls",
    metadata,
    Column("acl_id", String(64), primary_key=True),
    Column("principal", String(PRINCIPAL_MAX_LENGTH), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("resource_type", String(32), nullable=False),
    Column("resource_name", String(RESOURCE_NAME_MAX_LENGTH), nullable=False),
    Column("pattern_type", String(16), nullable=False),
    Column("permission", String(16), nullable=False),
    Column("host", String(64), nullable=False),
)
