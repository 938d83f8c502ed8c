"""Test worker: a confluent-kafka (librdkafka) consumer-group member, against a broker, that
"processes" records by printing them.

Usage: ck_group_member.py BOOTSTRAP TOPIC GROUP NAME [--strategy S] [--session-ms N]
                          [--heartbeat-ms N]

Prints one line per event, each with time.monotonic() (system-wide on Linux, so comparable
across processes), in the format of group_member.py:

    ready
    A <t> <p,p,...>          partitions assigned (callback)
    V <t> <p,p,...>          partitions revoked
    L <t> <p,p,...>          partitions lost
    R <t> <partition> <offset> <value>      a record processed
    c <t> <partition>:<offset>              a commit of this offset is about to be attempted
    C <t> <partition>:<offset>              committed after processing (commit succeeded)
    F <t> <error>                           a commit failed (a rebalance, fenced)

Commits each record synchronously after processing it (auto-commit off), so the next owner of
a partition starts right after the last record processed here, unless this process is killed
between processing and committing. Closes cleanly (leaving the group) when a line "stop"
arrives on stdin.
"""

import argparse
import select
import sys
import time

from confluent_kafka import Consumer, KafkaException


def emit(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def partitions(tps: list) -> str:
    return ",".join(str(tp.partition) for tp in sorted(tps, key=lambda tp: tp.partition)) or "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "topic", "group", "name"):
        parser.add_argument(name)
    parser.add_argument("--strategy", default="range")
    parser.add_argument("--session-ms", type=int, default=6000)
    parser.add_argument("--heartbeat-ms", type=int, default=500)
    args = parser.parse_args()
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap, "group.id": args.group, "client.id": args.name,
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "partition.assignment.strategy": args.strategy,
        "session.timeout.ms": args.session_ms, "heartbeat.interval.ms": args.heartbeat_ms,
    })
    consumer.subscribe(
        [args.topic],
        on_assign=lambda _c, tps: emit("A", time.monotonic(), partitions(tps)),
        on_revoke=lambda _c, tps: emit("V", time.monotonic(), partitions(tps)),
        on_lost=lambda _c, tps: emit("L", time.monotonic(), partitions(tps)),
    )
    emit("ready")
    while True:
        if select.select([sys.stdin], [], [], 0)[0] and sys.stdin.readline().strip() == "stop":
            break
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error() is not None:
            emit("E", time.monotonic(), message.error().name())
            continue
        value = message.value().decode()
        emit("R", time.monotonic(), message.partition(), message.offset(), value)
        position = f"{message.partition()}:{message.offset() + 1}"
        # A kill between the commit and its "C" line must not look like a lost commit.
        emit("c", time.monotonic(), position)
        try:
            consumer.commit(message=message, asynchronous=False)
            emit("C", time.monotonic(), position)
        except KafkaException as exc:
            emit("F", time.monotonic(), exc.args[0].name())
    consumer.close()
    emit("closed")


if __name__ == "__main__":
    main()
