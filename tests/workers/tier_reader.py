"""Test worker: read partition 0 of TOPIC from offset 0 again and again while another process
appends, tiers, and drops local copies, checking every record.

The writer gives the record at offset i the value ``b"%d" % i`` and never deletes anything
(no total retention), so every pass must see offsets 0 .. end-1, each exactly once, each with
its own value. Passes alternate between raw ``log.fetch`` loops (random ``max_bytes``) and a
consumer. After each pass print
``ok <records> <end> <first local offset before> <first local offset after> <how>``
(the first local offsets read from the partition directory's listing, not through the log,
so this process's own view of the segments stays as stale as reading leaves it), or
``bad <reason>`` and exit 1. Runs until killed.

Usage: tier_reader.py DATA_DIR OBJECT_STORE_URL TOPIC SEED
"""

import os
import random
import sys
import traceback
from pathlib import Path

import logstore
from logstore.log.segment import parse_segment_file_name
from logstore.records.reader import iter_records


def first_local_offset(directory: Path) -> int:
    bases = [b for b in map(parse_segment_file_name, os.listdir(directory)) if b is not None]
    return min(bases)


def check(offset: int, expected: int, value: bytes | None) -> str | None:
    if offset != expected:
        return f"offset {offset} where {expected} was due"
    if value != b"%d" % offset:
        return f"offset {offset} holds {value!r}"
    return None


def fetch_pass(log: logstore.Log, topic: str, end: int,
               rng: random.Random) -> tuple[str | None, int]:
    offset = 0
    while offset < end:
        fetched = log.fetch(topic, 0, offset, max_bytes=rng.choice([0, 1, 200, 1500, 6000, 20000]))
        if not fetched.records:
            return f"empty fetch at {offset} below {end}", offset
        for header, records in iter_records(fetched.records, allow_partial_tail=False):
            for record in records:
                if record.offset < offset:
                    continue
                if record.offset >= end:
                    return None, offset
                bad = check(record.offset, offset, record.value)
                if bad:
                    return bad, offset
                offset += 1
            if offset != header.last_offset + 1:
                return (
                    f"batch [{header.base_offset}, {header.last_offset}] ends at {offset}",
                    offset,
                )
    return None, offset


def consumer_pass(log: logstore.Log, topic: str, end: int) -> tuple[str | None, int]:
    consumer = log.consumer(auto_offset_reset="earliest")
    try:
        consumer.assign([logstore.TopicPartition(topic, 0)])
        offset = 0
        while offset < end:
            records = consumer.poll(timeout_ms=1000)
            if not records:
                return f"the consumer found nothing at {offset} below {end}", offset
            for record in records:
                if record.offset >= end:
                    break
                bad = check(record.offset, offset, record.value)
                if bad:
                    return bad, offset
                offset += 1
        return None, offset
    finally:
        consumer.close()


def main() -> None:
    data_dir, url, topic, seed = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    rng = random.Random(seed)
    directory = Path(data_dir) / "topics" / topic / "0"
    with logstore.open(data_dir, object_store_url=url, maintenance_interval_ms=None,
                       tier_interval_ms=None) as log:
        print("ready", flush=True)
        passes = 0
        while True:
            how = "fetch" if passes % 2 == 0 else "consumer"
            count = 0
            try:
                before = first_local_offset(directory)
                end = log.partition_log(topic, 0).high_watermark
                bad, count = (fetch_pass(log, topic, end, rng) if how == "fetch"
                              else consumer_pass(log, topic, end))
                after = first_local_offset(directory)
            except Exception:
                bad = "error " + traceback.format_exc().replace("\n", " | ")
            if bad:
                print(f"bad {how} pass {passes}: {bad}", flush=True)
                sys.exit(1)
            print(f"ok {count} {end} {before} {after} {how}", flush=True)
            passes += 1


if __name__ == "__main__":
    main()
