"""Registered brokers in the SQL metadata store (SQLite and PostgreSQL): epochs, sessions on the
database's clock, refusal of a second live broker with the same id, fencing of an earlier
incarnation's renewal and unregistration, and racing registrations."""

from __future__ import annotations

import time

import pytest
from logstore.backends.broker_records import BrokerRegistration
from logstore.backends.sql_metadata import SqlMetadataStore

from logstore.errors import DuplicateResourceError, InvalidArgumentError, StaleVersionError

SESSION_MS = 9_000
T0 = 1_000_000


def test_a_registration_takes_the_next_epoch_once_the_last_session_lapsed(
        store: SqlMetadataStore) -> None:
    first = store.register_broker(1, "127.0.0.1", 9092, "r1", session_timeout_ms=SESSION_MS,
                                  now_ms=T0)
    assert first == BrokerRegistration(1, 1, "127.0.0.1", 9092, "r1", T0, T0 + SESSION_MS)
    with pytest.raises(DuplicateResourceError, match="in use by a live broker"):
        store.register_broker(1, "127.0.0.2", 9093, None, session_timeout_ms=SESSION_MS,
                              now_ms=T0 + SESSION_MS - 1)
    second = store.register_broker(1, "127.0.0.2", 9093, None, session_timeout_ms=SESSION_MS,
                                   now_ms=T0 + SESSION_MS)
    assert (second.epoch, second.host, second.port, second.rack) == (2, "127.0.0.2", 9093, None)
    with pytest.raises(StaleVersionError) as stale:  # the earlier incarnation is fenced
        store.renew_broker_session(first, session_timeout_ms=SESSION_MS, now_ms=T0 + 1)
    assert not stale.value.retriable
    assert not store.unregister_broker(first)
    assert store.list_brokers(now_ms=T0 + SESSION_MS) == [second]


def test_sessions_are_renewed_and_lapse(store: SqlMetadataStore) -> None:
    one = store.register_broker(1, "h1", 1, None, session_timeout_ms=SESSION_MS, now_ms=T0)
    store.register_broker(2, "h2", 2, None, session_timeout_ms=SESSION_MS, now_ms=T0)
    renewed = store.renew_broker_session(one, session_timeout_ms=SESSION_MS,
                                         now_ms=T0 + 5_000)
    assert renewed.expires_ms == T0 + 5_000 + SESSION_MS
    alive = {b.broker_id: b.alive for b in store.list_brokers(now_ms=T0 + SESSION_MS)}
    assert alive == {1: True, 2: False}
    three = store.register_broker(3, "h3", 3, None, session_timeout_ms=SESSION_MS,
                                  now_ms=T0 + 9_500)
    assert store.unregister_broker(three, now_ms=T0 + 9_600)
    assert not store.unregister_broker(three, now_ms=T0 + 9_700)  # already ended
    listed = {b.broker_id: (b.alive, b.epoch) for b in store.list_brokers(now_ms=T0 + 9_700)}
    assert listed == {1: (True, 1), 2: (False, 1), 3: (False, 1)}
    again = store.register_broker(3, "h3", 3, None, session_timeout_ms=SESSION_MS,
                                  now_ms=T0 + 9_700)  # free at once, at the next epoch
    assert again.epoch == 2


def test_sessions_follow_the_database_clock(store: SqlMetadataStore) -> None:
    before = int(time.time() * 1000)
    registration = store.register_broker(3, "h", 9092, None, session_timeout_ms=SESSION_MS)
    after = int(time.time() * 1000)
    # The database runs on this machine here: its clock is this one's, to within a second.
    assert before - 1_000 <= registration.registered_ms <= after + 1_000
    assert registration.expires_ms == registration.registered_ms + SESSION_MS
    (listed,) = store.list_brokers()
    assert listed.alive and listed.epoch == 1


def test_racing_registrations_of_one_id_leave_one_live_broker(store: SqlMetadataStore,
                                                              race) -> None:
    results = race(6, lambda i: store.register_broker(
        7, f"h{i}", 9000 + i, None, session_timeout_ms=SESSION_MS, now_ms=T0))
    won = [r for r in results if isinstance(r, BrokerRegistration)]
    assert len(won) == 1 and won[0].epoch == 1
    assert all(isinstance(r, DuplicateResourceError) for r in results if r is not won[0])
    assert store.list_brokers(now_ms=T0) == won


@pytest.mark.parametrize("broker_id, host, port, rack, timeout", [
    (-1, "h", 1, None, 1), (1 << 31, "h", 1, None, 1), (True, "h", 1, None, 1),
    (1, "", 1, None, 1), (1, "h", 0, None, 1), (1, "h", 65536, None, 1), (1, "h", 1, "", 1),
    (1, "h", 1, None, 0),
])
def test_bad_registrations_are_refused(store: SqlMetadataStore, broker_id, host, port, rack,
                                       timeout) -> None:
    with pytest.raises(InvalidArgumentError):
        store.register_broker(broker_id, host, port, rack, session_timeout_ms=timeout)
    assert store.list_brokers() == []
