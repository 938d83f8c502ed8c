"""logstore: an embeddable, durable, partitioned commit log with Kafka's semantics.

    import logstore
    with logstore.open("./data") as log:
        log.create_topic("orders", partitions=3)
        with log.producer() as producer:
            producer.send("orders", value=b"...", key=b"user-42")
"""

# _source_tree is imported first, for its effect: in a source checkout it maps backends/,
# compaction/, cli/ and alembic/ into this package as an installation does, before the imports
# below need them (see logstore/_source_tree.py).
from logstore import (
    _source_tree,  # noqa: F401
    errors,
)
from logstore.checkup import PartitionRepair
from logstore.client.consumer import Consumer
from logstore.client.futures import RecordFuture
from logstore.client.group_membership import ConsumerRebalanceListener
from logstore.client.producer import Producer
from logstore.clock import Clock, ManualClock, SystemClock
from logstore.embedded import Log, open
from logstore.errors import *  # noqa: F403  (the error hierarchy is part of the public API)
from logstore.log.check import PartitionCheck, Problem, ProblemKind
from logstore.log.repair import RepairStep
from logstore.types import (
    AppendResult,
    ConsumerGroupMetadata,
    ConsumerRecord,
    FetchResult,
    GroupDescription,
    GroupListing,
    Header,
    IsolationLevel,
    MemberDescription,
    OffsetAndMetadata,
    OffsetAndTimestamp,
    PartitionDescription,
    PartitionLag,
    RecordMetadata,
    RetentionReport,
    TopicDescription,
    TopicPartition,
    TransactionDescription,
)

__version__ = "0.1.0"

__all__ = [
    "AppendResult", "Clock", "Consumer", "ConsumerGroupMetadata", "ConsumerRebalanceListener",
    "ConsumerRecord",
    "FetchResult", "GroupDescription", "GroupListing", "Header", "IsolationLevel", "Log",
    "ManualClock", "MemberDescription", "OffsetAndMetadata", "OffsetAndTimestamp",
    "PartitionCheck", "PartitionDescription", "PartitionLag", "PartitionRepair", "Problem",
    "ProblemKind", "Producer", "RecordFuture", "RecordMetadata", "RepairStep", "RetentionReport",
    "SystemClock",
    "TopicDescription", "TopicPartition", "TransactionDescription", "errors", "open",
]
__all__ += errors.__all__
