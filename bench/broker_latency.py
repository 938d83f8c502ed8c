"""Produce-acknowledgement latency through ``logstore serve`` at a fixed rate, with the consumer
where you choose: none, kcat in a process of its own, or a confluent-kafka consumer thread in
the producer's process (how ``python -m bench`` ran it before 2026-12-08).

One confluent-kafka producer (``linger.ms=5``, ``acks=all``, 100 B values by default) sends
``--rate`` records per second for ``--seconds`` to one partition of a topic with durability
fsync; one record in ``--sample-every`` is timed from its intended send time to its delivery
callback. Everything runs on loopback and stops by itself.

    python -m bench.broker_latency --rate 200000 --seconds 10 --consumer kcat
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.systems.logstore_broker import LogstoreBroker

CONSUMERS = ("none", "kcat", "thread")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m bench.broker_latency --rate 200000 --consumer kcat")
    parser.add_argument("--rate", type=int, default=200_000, help="records per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--consumer", choices=CONSUMERS, default="none")
    parser.add_argument("--sample-every", type=int, default=100)
    args = parser.parse_args(argv)
    if args.consumer == "kcat" and shutil.which("kcat") is None:
        parser.error("kcat is not installed (apt-get install -y kcat)")
    system = LogstoreBroker("confluent", None)
    system.start()
    try:
        system.create_topic("latency", 1)
        stop = _start_consumer(args.consumer, system.bootstrap)
        try:
            latencies = _produce(system.bootstrap, args)
        finally:
            stop()
    finally:
        system.stop()
    latencies.sort()

    def quantile(q: float) -> float:
        return latencies[int(q * (len(latencies) - 1))] / 1e6

    print(f"rate {args.rate:,} rec/s, {args.value_bytes} B, consumer {args.consumer}: ack p50 "
          f"{quantile(0.5):.2f} ms, p99 {quantile(0.99):.2f} ms, p99.9 {quantile(0.999):.2f} "
          f"ms, max {latencies[-1] / 1e6:.2f} ms ({len(latencies):,} samples)")
    return 0


def _start_consumer(kind: str, bootstrap: str) -> Callable[[], None]:
    """Start the consumer; returns what stops it."""
    if kind == "kcat":
        process = subprocess.Popen(["kcat", "-C", "-b", bootstrap, "-t", "latency", "-o",
                                    "beginning", "-q", "-f", ""], stdout=subprocess.DEVNULL)

        def stop_process() -> None:
            process.terminate()
            process.wait(10)

        return stop_process
    if kind == "thread":
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        stopping = threading.Event()

        def consume() -> None:
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "latency",
                                 "enable.auto.commit": False})
            consumer.assign([TopicPartition("latency", 0, OFFSET_BEGINNING)])
            while not stopping.is_set():
                consumer.consume(10_000, 0.2)
            consumer.close()

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()

        def stop_thread() -> None:
            stopping.set()
            thread.join(30)

        return stop_thread
    return lambda: None


def _produce(bootstrap: str, args: Any) -> list[int]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    latencies: list[int] = []

    def timed(intended_ns: int) -> Callable[[Any, Any], None]:
        return lambda err, _msg: None if err else latencies.append(
            time.perf_counter_ns() - intended_ns)

    value = b"x" * args.value_bytes
    total = int(args.rate * args.seconds)
    started = time.perf_counter_ns()
    sent = 0
    while sent < total:
        due = min(total, (time.perf_counter_ns() - started) * args.rate // 1_000_000_000)
        if due <= sent:
            time.sleep(0.0005)
            producer.poll(0)
            continue
        for i in range(sent, due):
            callback = (timed(started + i * 1_000_000_000 // args.rate)
                        if i % args.sample_every == 0 else None)
            while True:
                try:
                    producer.produce("latency", value, partition=0, on_delivery=callback)
                    break
                except BufferError:
                    producer.poll(0.005)
        sent = due
        producer.poll(0)
    if producer.flush(120) != 0:
        raise SystemExit("not every record was delivered within 120 s")
    return latencies


if __name__ == "__main__":
    raise SystemExit(main())
