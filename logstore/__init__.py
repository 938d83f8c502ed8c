"""logstore: an embeddable, durable, partitioned commit log with Kafka's semantics."""

from logstore import errors
from logstore.errors import *  # noqa: F401,F403  (the error hierarchy is part of the public API)
from logstore.types import (
    AppendResult,
    ConsumerRecord,
    FetchResult,
    Header,
    IsolationLevel,
    OffsetAndTimestamp,
    PartitionDescription,
    RecordMetadata,
    RetentionReport,
    TopicDescription,
    TopicPartition,
)

from logstore.client.consumer import Consumer
from logstore.client.futures import RecordFuture
from logstore.client.producer import Producer
from logstore.clock import Clock, ManualClock, SystemClock
from logstore.embedded import Log, open

__version__ = "0.1.0"
