"""Test worker: append COUNT records to every partition of TOPIC, wait until all are
acknowledged, print "acked", then kill itself with SIGKILL (no close: the segments' WAL files
keep what a crash would leave).

Usage: produce_and_die.py DATA_DIR TOPIC COUNT
"""

import os
import signal
import sys

import logstore


def main() -> None:
    data_dir, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = logstore.open(data_dir, maintenance_interval_ms=None)
    partitions = log.describe_topic(topic).partition_count
    producer = log.producer(linger_ms=5, batch_size=500)
    futures = [producer.send(topic, value=b"v%d" % i, key=b"k%d" % i, partition=p)
               for p in range(partitions) for i in range(count)]
    producer.flush()
    for future in futures:
        future.result(timeout=60)
    print("acked", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    main()
