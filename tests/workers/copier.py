"""Test worker: an exactly-once copier (consume-transform-produce).

Usage: copier.py DATA_DIR IN_TOPIC OUT_TOPIC TRANSACTIONAL_ID [--metadata-url URL]
                 [--batch N] [--exit-when-idle] [--txn-delay-ms N]

Reads IN_TOPIC as a member of group "copier" (read_committed, no auto-commit), and for each
poll writes b"copy:" + value to the same partition of OUT_TOPIC in one transaction together
with the consumed offsets (send_offsets_to_transaction). Prints "ready", then "committed <n>"
after each transaction. With --exit-when-idle it exits 0 once a poll returns nothing after it
has caught up with the input's end offsets.
"""

import argparse
import sys
import time

import logstore


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("data_dir", "in_topic", "out_topic", "transactional_id"):
        parser.add_argument(name)
    parser.add_argument("--metadata-url", default=None)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--exit-when-idle", action="store_true")
    parser.add_argument("--txn-delay-ms", type=int, default=0,
                        help="pause between a transaction's sends and its commit")
    args = parser.parse_args()
    log = logstore.open(args.data_dir, metadata_url=args.metadata_url,
                        maintenance_interval_ms=None)
    consumer = log.consumer(group_id="copier", auto_offset_reset="earliest",
                            enable_auto_commit=False, isolation_level="read_committed",
                            max_poll_records=args.batch, session_timeout_ms=3000,
                            heartbeat_interval_ms=200)
    consumer.subscribe([args.in_topic])
    producer = log.producer(transactional_id=args.transactional_id, linger_ms=1)
    producer.init_transactions()
    print("ready", flush=True)
    while True:
        records = consumer.poll(timeout_ms=300)
        if not records:
            if args.exit_when_idle and consumer.assignment():
                ends = consumer.end_offsets(consumer.assignment())
                if all(consumer.position(tp) >= end for tp, end in ends.items()):
                    break
            continue
        with producer.transaction():
            for record in records:
                producer.send(args.out_topic, value=b"copy:" + record.value,
                              key=record.key, partition=record.partition)
            producer.flush()  # the records are in the log (read_uncommitted sees them) ...
            if args.txn_delay_ms:
                time.sleep(args.txn_delay_ms / 1000)  # ... while the transaction stays open
            producer.send_offsets_to_transaction(
                {tp: logstore.OffsetAndMetadata(consumer.position(tp))
                 for tp in consumer.assignment()},
                consumer.group_metadata(),
            )
        print(f"committed {len(records)}", flush=True)
    producer.close()
    consumer.close()
    log.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
