"""The broker's request handlers, one module per API family.

Each module has ``register(dispatcher)``, adding its APIs and the versions it serves.
"""

from __future__ import annotations

from logstore.broker.dispatch import Dispatcher


def register_all(dispatcher: Dispatcher) -> None:
    """Register every handler module's APIs."""
    from logstore.broker.handlers import (
        acls,
        admin_configs,
        admin_topics,
        cluster,
        coordinators,
        fetch,
        groups,
        metadata,
        offsets,
        produce,
        producer_ids,
        sasl,
        txn,
    )

    for module in (metadata, produce, fetch, offsets, producer_ids, coordinators,
                   admin_topics, admin_configs, acls, cluster, txn, sasl, groups):
        module.register(dispatcher)
