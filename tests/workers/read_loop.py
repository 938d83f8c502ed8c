"""Test worker: read partition 0 of topic "c" from the beginning, PASSES times, checking each
pass while other processes append and compact. Print "ok <records> <end>" per pass, or
"bad <reason>" and exit 1.

The parent writes record i (offset i) with key ``k<i % KEYS>`` and value ``<i>``, so any
record read can be checked on its own, and a pass that read up to ``end`` must have seen,
for every key, its latest record below ``end``.

Usage: read_loop.py DATA_DIR PASSES KEYS
"""

import sys

import logstore
from logstore.records.reader import iter_records


def one_pass(log: logstore.Log, keys: int) -> str:
    end = log.partition_log("c", 0).high_watermark
    offset, last_seen, count = 0, -1, 0
    latest: dict[bytes, int] = {}
    while offset < end:
        fetched = log.fetch("c", 0, offset, max_bytes=64 * 1024)
        if not fetched.records:
            return f"bad empty fetch at {offset} below {end}"
        for header, records in iter_records(fetched.records, allow_partial_tail=False):
            for record in records:
                if record.offset < offset:
                    continue
                if record.offset <= last_seen:
                    return f"bad offset {record.offset} after {last_seen}"
                if (
                    record.key != b"k%d" % (record.offset % keys)
                    or record.value != b"%d" % record.offset
                ):
                    return f"bad record {record}"
                last_seen = record.offset
                latest[record.key] = record.offset
                count += 1
            offset = max(offset, header.last_offset + 1)
    for k in range(keys):
        expected = max((o for o in range(max(0, end - keys), end) if o % keys == k), default=None)
        if expected is not None and latest.get(b"k%d" % k, -1) < expected:
            return f"bad key k{k}: latest seen {latest.get(b'k%d' % k)}, expected {expected}"
    return f"ok {count} {end}"


def main() -> None:
    data_dir, passes, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with logstore.open(data_dir, maintenance_interval_ms=None) as log:
        print("ready", flush=True)
        for _ in range(passes):
            line = one_pass(log, keys)
            print(line, flush=True)
            if line.startswith("bad"):
                sys.exit(1)


if __name__ == "__main__":
    main()
