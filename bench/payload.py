"""The record values the benchmark sends: a marker byte, a timestamp, incompressible filler.

Layout of a value of ``size`` bytes: byte 0 is 1 when the value carries a timestamp (a sampled
record, see ``latency``) and 0 otherwise; bytes 1-8 are the timestamp, nanoseconds of
``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on the host), big-endian;
the rest is random bytes, so compression would gain nothing. In the fixed-rate run the
timestamp is the record's intended send time, so end-to-end latency is corrected for
coordinated omission.
"""

from __future__ import annotations

import os

HEADER_BYTES = 9
MIN_VALUE_BYTES = HEADER_BYTES


class Payload:
    """Values of one size: :attr:`plain` (no timestamp) and :meth:`stamped`."""

    def __init__(self, size: int, *, seed: bytes | None = None) -> None:
        if size < MIN_VALUE_BYTES:
            raise ValueError(f"values must be at least {MIN_VALUE_BYTES} bytes, got {size}")
        self.size = size
        self._filler = seed if seed is not None else os.urandom(size - HEADER_BYTES)
        if len(self._filler) != size - HEADER_BYTES:
            raise ValueError("seed must be size - 9 bytes long")
        self.plain = bytes(HEADER_BYTES) + self._filler

    def stamped(self, timestamp_ns: int) -> bytes:
        """A value carrying ``timestamp_ns``."""
        return b"\x01" + timestamp_ns.to_bytes(8, "big") + self._filler


def stamp_of(value: bytes) -> int | None:
    """The timestamp a value carries, or None for an unstamped value."""
    if not value[0]:
        return None
    return int.from_bytes(value[1:HEADER_BYTES], "big")
