"""Test worker: a consumer-group member that "processes" records by printing them.

Usage: group_member.py DATA_DIR TOPIC GROUP NAME [--strategy S] [--instance ID]
                       [--session-ms N] [--heartbeat-ms N] [--metadata-url URL]
                       [--process-ms N]

Prints one line per event, each with time.monotonic() (system-wide on Linux, so comparable
across processes):

    ready
    A <t> <p,p,...>          partitions assigned (listener)
    V <t> <p,p,...>          partitions revoked
    L <t> <p,p,...>          partitions lost
    R <t> <partition> <offset> <value>     a record processed
    c <t> <partition>:<offset>,...          a commit of these offsets is about to be attempted
    C <t> <partition>:<offset>,...          offsets committed after processing (commit succeeded)
    F <t> <message>                         a commit failed (fenced)

Commits synchronously after processing each poll's records (auto-commit off). Stops and
closes cleanly when a line "stop" arrives on stdin.
"""

import argparse
import select
import sys
import time

import logstore
from logstore.errors import CommitFailedError, RebalanceInProgressError


def emit(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def partitions(tps: set) -> str:
    return ",".join(str(tp.partition) for tp in sorted(tps)) or "-"


class Listener:
    def on_partitions_revoked(self, revoked: set) -> None:
        emit("V", time.monotonic(), partitions(revoked))

    def on_partitions_assigned(self, assigned: set) -> None:
        emit("A", time.monotonic(), partitions(assigned))

    def on_partitions_lost(self, lost: set) -> None:
        emit("L", time.monotonic(), partitions(lost))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("data_dir", "topic", "group", "name"):
        parser.add_argument(name)
    parser.add_argument("--strategy", default="range")
    parser.add_argument("--instance", default=None)
    parser.add_argument("--session-ms", type=int, default=3000)
    parser.add_argument("--heartbeat-ms", type=int, default=200)
    parser.add_argument("--metadata-url", default=None)
    parser.add_argument("--process-ms", type=int, default=0,
                        help="time spent 'processing' each poll's records before committing")
    args = parser.parse_args()
    log = logstore.open(args.data_dir, metadata_url=args.metadata_url,
                        maintenance_interval_ms=None)
    consumer = log.consumer(
        group_id=args.group, client_id=args.name, auto_offset_reset="earliest",
        enable_auto_commit=False, partition_assignment_strategy=args.strategy,
        group_instance_id=args.instance, session_timeout_ms=args.session_ms,
        heartbeat_interval_ms=args.heartbeat_ms,
    )
    consumer.subscribe([args.topic], listener=Listener())
    emit("ready")
    while True:
        if select.select([sys.stdin], [], [], 0)[0] and sys.stdin.readline().strip() == "stop":
            break
        records = consumer.poll(timeout_ms=100)
        if not records:
            continue
        for record in records:
            emit("R", time.monotonic(), record.partition, record.offset, record.value.decode())
        if args.process_ms:
            time.sleep(args.process_ms / 1000)
        positions = ",".join(
            f"{tp.partition}:{consumer.position(tp)}" for tp in sorted(consumer.assignment()))
        # A kill between the commit and its "C" line must not look like a lost commit.
        emit("c", time.monotonic(), positions)
        try:
            consumer.commit()
            emit("C", time.monotonic(), positions)
        except (CommitFailedError, RebalanceInProgressError) as exc:
            emit("F", time.monotonic(), type(exc).__name__)
    consumer.close()
    log.close()
    emit("closed")


if __name__ == "__main__":
    main()
