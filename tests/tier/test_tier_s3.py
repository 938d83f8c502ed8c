"""Tiered storage end to end over S3 (moto's HTTP server): a partition rolled into many
segments is tiered, its local copies dropped, and every read from the beginning, across the
remote/local boundary, returns exactly what it returned before tiering: the same records at
the same offsets and the same fetch bytes, in the Log that tiered and in a fresh one."""

from __future__ import annotations

import itertools
import random
import uuid
from pathlib import Path
from typing import Any

from logstore.backends.manifest_records import COPY_FINISHED

import logstore
from logstore.clock import ManualClock

T0 = 1_700_000_000_000
TOPIC = "events"
RECORDS = 1600
CONFIG = {
    "remote.storage.enable": "true",
    "segment.bytes": "4096",
    "local.retention.bytes": "0",
    "durability": "os",
}
#: Up to one batch, a few batches, and more than a segment (a fetch crossing segments).
MAX_BYTES = (0, 700, 9000)

Record = tuple[int, bytes | None, bytes | None, int, tuple[Any, ...]]


def produce(log: logstore.Log) -> None:
    """Keys (some null), values of varying size (some null), 0-2 headers, timestamps that
    mostly rise, in small batches."""
    rng = random.Random("tier-s3")
    producer = log.producer(linger_ms=0, batch_size=600)
    for i in range(RECORDS):
        key = None if i % 11 == 0 else b"key-%d" % (i % 97)
        value = None if i % 53 == 0 else b"value-%06d-" % i + bytes(rng.randrange(256)
                                                                     for _ in range(i % 40))
        headers = [(f"h{j}", b"%d:%d" % (i, j)) for j in range(i % 3)]
        producer.send(TOPIC, key=key, value=value, partition=0, headers=headers,
                      timestamp_ms=T0 + i * 10 - (i % 5) * 3)
    producer.flush()
    producer.close()


def consume_all(log: logstore.Log) -> list[Record]:
    consumer = log.consumer(auto_offset_reset="earliest")
    tp = logstore.TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    end = log.partition_log(TOPIC, 0).high_watermark
    out: list[Record] = []
    while consumer.position(tp) < end:
        for r in consumer.poll(timeout_ms=100):
            out.append((r.offset, r.key, r.value, r.timestamp_ms, tuple(r.headers)))
    consumer.close()
    return out


def fetch_pairs(boundaries: list[int], end: int) -> list[tuple[int, int]]:
    offsets = set(range(0, end, 173)) | {end - 1, end}
    for base in boundaries:
        offsets |= {base - 1, base}
    return [(o, m) for o in sorted(x for x in offsets if 0 <= x <= end) for m in MAX_BYTES]


def fetch_bytes(log: logstore.Log, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    return {(o, m): log.fetch(TOPIC, 0, o, max_bytes=m).records for o, m in pairs}


def test_tiered_round_trip_over_s3_http(
    tmp_path: Path, moto_server: str, s3_http_admin_client: Any
) -> None:
    bucket = f"tier-{uuid.uuid4().hex[:12]}"
    s3_http_admin_client.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/cluster-a?endpoint_url={moto_server}&region=us-east-1"
    data = tmp_path / "data"
    clock = ManualClock(T0 + 10 * RECORDS)
    options: dict[str, Any] = {"object_store_url": url, "clock": clock,
                               "maintenance_interval_ms": None, "tier_interval_ms": None}

    with logstore.open(data, **options) as log:
        log.create_topic(TOPIC, partitions=1, config=CONFIG)
        produce(log)
        plog = log.partition_log(TOPIC, 0)
        layout = plog.layout()
        sealed = [s.base_offset for s in layout.segments[:-1]]
        assert len(sealed) >= 12, "the test needs many segments"
        expected = consume_all(log)
        assert [r[0] for r in expected] == list(range(RECORDS))
        pairs = fetch_pairs([s.base_offset for s in layout.segments], RECORDS)
        before = fetch_bytes(log, pairs)
        assert all(before[(o, m)] for o, m in pairs if o < RECORDS)

        report = log.tier()
        assert report.failed == ()
        assert report.segments_copied == len(sealed)
        assert report.partitions[0].local_segments_deleted == len(sealed)

        # local.retention.bytes=0: only the active segment is left on disk.
        layout = plog.layout()
        assert [s.base_offset for s in layout.segments] == [layout.segments[-1].base_offset]
        first_local = plog.first_local_offset()
        assert first_local == layout.segments[-1].base_offset > 0
        assert layout.log_start_offset == 0

        # The manifest: one live row per copied segment, tiling [0, first local offset).
        rows = log.metadata.remote_segments()
        assert [r.state for r in rows] == [COPY_FINISHED] * len(sealed)
        assert [r.base_offset for r in rows] == sealed
        assert rows[0].base_offset == 0 and rows[-1].next_offset == first_local
        for row, following in itertools.pairwise(rows):
            assert row.next_offset == following.base_offset
        # ... each backed by one object in the bucket, under the URL's prefix.
        listed = s3_http_admin_client.list_objects_v2(Bucket=bucket, Prefix="cluster-a/topics/")
        objects = {o["Key"]: o["Size"] for o in listed.get("Contents", [])}
        assert objects == {f"cluster-a/{r.object_key}": r.size_bytes for r in rows}

        [status] = log.tier_status(TOPIC)
        assert status.remote_storage_enable
        assert status.remote_objects == report.segments_copied == len(sealed)
        assert (status.remote_start_offset, status.remote_end_offset) == (0, first_local)
        assert status.remote_bytes == sum(r.size_bytes for r in rows)
        assert (status.log_start_offset, status.first_local_offset) == (0, first_local)
        assert status.log_end_offset == RECORDS
        assert status.local_segments == 1
        assert (status.copies_in_progress, status.lag_segments, status.lag_bytes) == (0, 0, 0)

        assert consume_all(log) == expected
        after = fetch_bytes(log, pairs)
        assert [p for p in pairs if after[p] != before[p]] == []
        # Nothing left to do: a second pass copies and deletes nothing.
        again = log.tier()
        assert again.segments_copied == 0
        assert again.partitions[0].status == "up-to-date"

    # A fresh Log (empty caches), in an order that is not sequential (no prefetch helps),
    # reads the same; so does one without a cache (every read a ranged GET), on a sample.
    shuffled = list(pairs)
    random.Random(7).shuffle(shuffled)
    no_cache: dict[str, Any] = {"remote_cache_bytes": 0}
    for extra, sample in (({}, shuffled), (no_cache, shuffled[:80])):
        with logstore.open(data, **options, **extra) as log:
            plog = log.partition_log(TOPIC, 0)
            assert plog.first_local_offset() == first_local
            again_bytes = fetch_bytes(log, sample)
            assert [p for p in sample if again_bytes[p] != before[p]] == []
            assert consume_all(log) == expected
