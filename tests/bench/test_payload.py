"""The benchmark's record values carry their timestamp in a fixed header."""

from __future__ import annotations

import pytest

from bench.payload import HEADER_BYTES, Payload, stamp_of


@pytest.mark.parametrize("size", [HEADER_BYTES, 100, 1024, 10240])
def test_stamped_and_plain_values_have_the_size_and_round_trip_the_stamp(size: int) -> None:
    payload = Payload(size)
    stamped = payload.stamped(123_456_789_012)
    assert len(stamped) == len(payload.plain) == size
    assert stamp_of(stamped) == 123_456_789_012
    assert stamp_of(payload.plain) is None
    assert stamped[HEADER_BYTES:] == payload.plain[HEADER_BYTES:]


def test_values_are_too_small_for_the_header() -> None:
    with pytest.raises(ValueError):
        Payload(HEADER_BYTES - 1)
