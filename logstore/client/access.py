"""What producers and consumers need from the log they belong to.

:class:`logstore.embedded.Log` implements this; keeping the seam narrow lets the clients run
unchanged over other sources later (a remote broker, a replica).
"""

from __future__ import annotations

from typing import Protocol

from logstore.client.registry import ClientRegistry
from logstore.clock import Clock
from logstore.config import TopicConfig
from logstore.coordinator.group_coordinator import GroupCoordinator
from logstore.coordinator.transaction_coordinator import TransactionCoordinator
from logstore.log.notify import AppendNotifier
from logstore.log.partition_log import PartitionLog


class ClientAccess(Protocol):
    """Thread-safe access to topics and partition logs."""

    clock: Clock
    notifier: AppendNotifier
    clients: ClientRegistry  # every client registers here, to be closed with the log
    group_coordinator: GroupCoordinator
    transaction_coordinator: TransactionCoordinator

    def topic_info(self, topic: str) -> tuple[int, TopicConfig]:
        """(partition count, config) of a topic; raises UnknownTopicOrPartitionError."""
        ...

    def partition_log(self, topic: str, partition: int) -> PartitionLog:
        """The partition's log; raises UnknownTopicOrPartitionError."""
        ...

    def topic_id(self, topic: str) -> str:
        """The id of the topic's current incarnation (a topic deleted and created again gets a
        new one); raises UnknownTopicOrPartitionError."""
        ...

    def topics(self) -> list[str]:
        """Names of every topic."""
        ...
