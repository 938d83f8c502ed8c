"""Test worker: open the log, print "ready", wait for a line on stdin, append one record to
partition 0 of TOPIC, print its offset and exit.

Usage: append_one.py DATA_DIR TOPIC VALUE
"""

import sys

import logstore


def main() -> None:
    data_dir, topic, value = sys.argv[1], sys.argv[2], sys.argv[3]
    with (
        logstore.open(data_dir, maintenance_interval_ms=None) as log,
        log.producer(linger_ms=0) as producer,
    ):
        print("ready", flush=True)
        sys.stdin.readline()
        meta = producer.send(topic, value=value.encode(), partition=0).result(timeout=60)
        print(meta.offset, flush=True)


if __name__ == "__main__":
    main()
