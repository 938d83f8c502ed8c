"""The Kafka-protocol broker: ``logstore serve``, or :class:`Broker` in-process.

See ``server`` (lifecycle, threads, long polls), ``connection`` (frames, ordering, limits),
``dispatch`` (the API table) and ``handlers`` (one module per API family).
"""

from logstore.broker.server import Broker, BrokerConfig

__all__ = ["Broker", "BrokerConfig"]
