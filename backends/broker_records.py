"""Registered brokers: value types of the metadata store's ``brokers`` table.

A broker registers under its id when it starts (``logstore serve``) and keeps a session alive
by renewing it; a broker whose session has lapsed is dead (Kafka's ``broker.session.timeout.ms``,
default 9 s). Every registration takes the next *broker epoch* of its id (Kafka's KIP-631 broker
epoch), so a renewal or an unregistration by an earlier incarnation fails once a newer one has
registered. Rows stay after a broker stops (its session ended), so epochs never go back.
Session times are the database's clock, never a broker's: brokers on different hosts agree on
who is alive however their own clocks drift.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Kafka's ``broker.session.timeout.ms`` default.
DEFAULT_BROKER_SESSION_TIMEOUT_MS = 9_000
#: Broker ids are int32 >= 0, as Kafka's ``node.id``.
MAX_BROKER_ID = (1 << 31) - 1
RACK_MAX_LENGTH = 255
HOST_MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class BrokerRegistration:
    """One broker's row: where clients reach it, its epoch, and until when (database clock,
    milliseconds) its session lasts; ``alive`` as of when it was read."""

    broker_id: int
    epoch: int
    host: str
    port: int
    rack: str | None
    registered_ms: int
    expires_ms: int
    alive: bool = True
