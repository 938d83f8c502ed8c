"""Registered brokers of :class:`~logstore.backends.sql_metadata.SqlMetadataStore` (table
``brokers``; values in :mod:`.broker_records`).

Invariants:

* Times are the database's clock (:func:`database_time_ms`, read inside the writing
  transaction), so every broker judges sessions by one clock. ``now_ms`` arguments replace it
  for tests only.
* A registration takes the next epoch of its broker id (rows are never deleted: an
  unregistration ends the session, so epochs never go back) and is refused while another
  incarnation's session is alive (a second broker with the same id is a configuration mistake);
  a renewal or an unregistration names its epoch and fails with StaleVersionError once a newer
  registration has replaced it. Each is one transaction, under SQLite's write lock or a
  PostgreSQL advisory lock keyed by the broker id.

Every function is thread-safe: each call runs in one transaction on a connection checked out of
the store's pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logstore.backends.broker_records import (
    HOST_MAX_LENGTH,
    MAX_BROKER_ID,
    RACK_MAX_LENGTH,
    BrokerRegistration,
)
from logstore.backends.schema import brokers
from sqlalchemy import Connection, Row, insert, select, text, update

from logstore.errors import DuplicateResourceError, InvalidArgumentError, StaleVersionError

if TYPE_CHECKING:
    from logstore.backends.sql_metadata import SqlMetadataStore

_MAX_SESSION_TIMEOUT_MS = 24 * 3600 * 1000
# Advisory-lock namespace (see sql_security) for broker ids.
_BROKER_LOCK_NAMESPACE = 0x4C42  # "LB"


def database_time_ms(conn: Connection) -> int:
    """The database server's clock, in milliseconds since the epoch."""
    if conn.dialect.name == "postgresql":
        query = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    else:
        query = "SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"
    return int(conn.execute(text(query)).scalar_one())


def register_broker(
    store: SqlMetadataStore, broker_id: int, host: str, port: int, rack: str | None, *,
    session_timeout_ms: int, now_ms: int | None = None,
) -> BrokerRegistration:
    _check(broker_id, host, port, rack, session_timeout_ms)
    with store._operation(f"registering broker {broker_id}"), \
            store._write_engine.begin() as conn:
        now = database_time_ms(conn) if now_ms is None else now_ms
        current = _locked(conn, broker_id)
        if current is not None and current.expires_ms > now:
            raise DuplicateResourceError(
                f"broker id {broker_id} is in use by a live broker at {current.host}:"
                f"{current.port} (epoch {current.epoch}): give each broker its own --broker-id")
        epoch = 1 if current is None else current.epoch + 1
        values = {"epoch": epoch, "host": host, "port": port, "rack": rack,
                  "registered_ms": now, "expires_ms": now + session_timeout_ms}
        if current is None:
            conn.execute(insert(brokers).values(broker_id=broker_id, **values))
        else:
            conn.execute(update(brokers).where(brokers.c.broker_id == broker_id)
                         .values(**values))
    return BrokerRegistration(broker_id, **values)


def renew_broker_session(
    store: SqlMetadataStore, registration: BrokerRegistration, *, session_timeout_ms: int,
    now_ms: int | None = None,
) -> BrokerRegistration:
    _check_timeout(session_timeout_ms)
    broker_id = registration.broker_id
    with store._operation(f"renewing the session of broker {broker_id}"), \
            store._write_engine.begin() as conn:
        now = database_time_ms(conn) if now_ms is None else now_ms
        result = conn.execute(
            update(brokers).where(brokers.c.broker_id == broker_id,
                                  brokers.c.epoch == registration.epoch)
            .values(expires_ms=now + session_timeout_ms))
        if result.rowcount != 1:
            raise StaleVersionError(
                f"broker {broker_id} epoch {registration.epoch} was replaced by a newer "
                "registration (or unregistered): it must register again", retriable=False)
        found = _locked(conn, broker_id)
    if found is None:  # deleted between the update and the read: cannot happen in one txn
        raise StaleVersionError(f"broker {broker_id} vanished while its session was renewed")
    return found


def unregister_broker(store: SqlMetadataStore, registration: BrokerRegistration, *,
                      now_ms: int | None = None) -> bool:
    with store._operation(f"unregistering broker {registration.broker_id}"), \
            store._write_engine.begin() as conn:
        now = database_time_ms(conn) if now_ms is None else now_ms
        result = conn.execute(update(brokers).where(
            brokers.c.broker_id == registration.broker_id,
            brokers.c.epoch == registration.epoch, brokers.c.expires_ms > now)
            .values(expires_ms=now))
        return bool(result.rowcount)


def list_brokers(store: SqlMetadataStore, *, now_ms: int | None = None
                 ) -> list[BrokerRegistration]:
    with store._operation("listing brokers"), store._engine.begin() as conn:
        now = database_time_ms(conn) if now_ms is None else now_ms
        rows = conn.execute(select(brokers).order_by(brokers.c.broker_id)).all()
    return [_registration(row, now) for row in rows]


def _locked(conn: Connection, broker_id: int) -> BrokerRegistration | None:
    """The broker's row, read under the broker id's lock (SQLite: the write transaction's;
    PostgreSQL: an advisory lock, which also covers a row not inserted yet)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:namespace, :broker_id)"),
                     {"namespace": _BROKER_LOCK_NAMESPACE, "broker_id": broker_id})
    row = conn.execute(select(brokers).where(brokers.c.broker_id == broker_id)).first()
    return None if row is None else _registration(row, None)


def _registration(row: Row[Any], now_ms: int | None) -> BrokerRegistration:
    return BrokerRegistration(
        broker_id=row.broker_id, epoch=row.epoch, host=row.host, port=row.port, rack=row.rack,
        registered_ms=row.registered_ms, expires_ms=row.expires_ms,
        alive=now_ms is None or row.expires_ms > now_ms)


def _check(broker_id: object, host: object, port: object, rack: object,
           session_timeout_ms: object) -> None:
    if isinstance(broker_id, bool) or not isinstance(broker_id, int) or not (
            0 <= broker_id <= MAX_BROKER_ID):
        raise InvalidArgumentError(f"a broker id is an int of 0 to {MAX_BROKER_ID}, got "
                                   f"{broker_id!r}")
    if not isinstance(host, str) or not 0 < len(host) <= HOST_MAX_LENGTH:
        raise InvalidArgumentError(f"a broker's host is 1 to {HOST_MAX_LENGTH} characters, got "
                                   f"{host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidArgumentError(f"a broker's port is 1 to 65535, got {port!r}")
    if rack is not None and (not isinstance(rack, str) or not 0 < len(rack) <= RACK_MAX_LENGTH):
        raise InvalidArgumentError(f"a rack is 1 to {RACK_MAX_LENGTH} characters, got {rack!r}")
    _check_timeout(session_timeout_ms)


def _check_timeout(session_timeout_ms: object) -> None:
    if isinstance(session_timeout_ms, bool) or not isinstance(session_timeout_ms, int) or not (
            0 < session_timeout_ms <= _MAX_SESSION_TIMEOUT_MS):
        raise InvalidArgumentError(f"a session timeout is 1 to {_MAX_SESSION_TIMEOUT_MS} ms, "
                                   f"got {session_timeout_ms!r}")
