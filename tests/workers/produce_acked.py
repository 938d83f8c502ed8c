"""Test worker: produce records and print each acknowledged one as "offset<TAB>value".

Usage: produce_acked.py DATA_DIR TOPIC WORKER_ID COUNT [BATCH]

Prints "ready" first. A line is printed only after the record's future resolved, so every line
the parent reads is an acknowledged write. COUNT 0 means forever (until killed).
"""

import sys

import logstore


def main() -> None:
    data_dir, topic, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    log = logstore.open(data_dir, maintenance_interval_ms=None)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    with log.producer(linger_ms=0) as producer:
        i = 0
        while count == 0 or i < count:
            futures = []
            for _ in range(batch):
                value = f"{worker}-{i}".encode()
                futures.append((value, producer.send(topic, value=value, partition=0)))
                i += 1
            for value, future in futures:
                meta = future.result(timeout=60)
                out.write(f"{meta.offset}\t{value.decode()}\n")
            out.flush()
    log.close()


if __name__ == "__main__":
    main()
