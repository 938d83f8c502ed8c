"""Object keys of remote segments: pure functions of what the manifest records.

``topics/<topic>/<partition:010d>/<base_offset:020d>-<last_offset:020d>-<segment id>.log``

Zero padding makes keys sort by partition and offset in a listing (S3 lists in UTF-8 byte
order). The segment id (a uuid4 in hex) makes every upload's key unique, so a retried or
concurrent copy of the same offsets never overwrites an object a reader may be using, and an
object whose id the manifest does not list is recognisably an orphan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Every remote segment lives under this prefix (the orphan cleaner lists it).
TOPICS_PREFIX = "topics/"
SUFFIX = ".log"

_KEY = re.compile(
    r"topics/(?P<topic>[a-zA-Z0-9._-]{1,249})/(?P<partition>\d{10})/"
    r"(?P<base>\d{20})-(?P<last>\d{20})-(?P<id>[0-9a-f]{32})\.log"
)


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """The parts of a remote segment's key."""

    topic: str
    partition: int
    base_offset: int
    last_offset: int
    segment_id: str


def object_key(topic: str, partition: int, base_offset: int, last_offset: int,
               segment_id: str) -> str:
    """The key of a remote segment (``last_offset`` is ``base_offset - 1`` when empty)."""
    return (f"{partition_prefix(topic, partition)}{base_offset:020d}-"
            f"{max(last_offset, 0):020d}-{segment_id}{SUFFIX}")


def partition_prefix(topic: str, partition: int) -> str:
    """The prefix of every remote segment of one partition."""
    return f"{TOPICS_PREFIX}{topic}/{partition:010d}/"


def parse_object_key(key: str) -> ObjectKey | None:
    """The parts of a remote segment key, or None for any other key."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    return ObjectKey(match["topic"], int(match["partition"]), int(match["base"]),
                     int(match["last"]), match["id"])
