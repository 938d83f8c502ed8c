"""The broker's counters (a Prometheus endpoint exposes them; see ``--metrics-listen``).

Updated on the event loop only, so plain integers suffice.
"""

from __future__ import annotations

from collections import Counter

from logstore.protocol.frames import read_fixed


class BrokerMetrics:
    """Requests, bytes and connection problems since the broker started."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()
        self.request_seconds: Counter[int] = Counter()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.bytes_fetched_total = 0
        self.protocol_errors = 0
        self.connections_refused = 0

    def request_done(self, frame: bytes, seconds: float) -> None:
        api_key = read_fixed(frame)[0]
        self.requests[api_key] += 1
        self.request_seconds[api_key] += seconds

    def bytes_in(self, count: int) -> None:
        self.bytes_received += count

    def bytes_fetched(self, count: int) -> None:
        self.bytes_fetched_total += count

    def bytes_out(self, count: int) -> None:
        self.bytes_sent += count

    def protocol_error(self) -> None:
        self.protocol_errors += 1

    def connection_refused(self) -> None:
        self.connections_refused += 1
