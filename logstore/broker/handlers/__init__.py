"""The broker's request handlers, one module per API family.

Each module has ``register(dispatcher)``, adding its APIs and the versions it serves.
"""

from __future__ import annotations

from logstore.broker.dispatch import Dispatcher


def register_all(dispatcher: Dispatcher) -> None:
    """Register every handler module's APIs."""
    from logstore.broker.handlers import (
        coordinators,
        fetch,
        metadata,
        offsets,
        produce,
        producer_ids,
    )

    for module in (metadata, produce, fetch, offsets, producer_ids, coordinators):
        module.register(dispatcher)
