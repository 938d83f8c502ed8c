"""A producer or consumer process of the ``logstore-processes`` and ``logstore-broker-*``
systems.

Run as ``python -m bench.systems.logstore_worker '<json job>'`` with the repository root as
the working directory (so ``bench`` is importable). The job names the role (``produce`` or
``consume``), the client (``embedded``: a ``Log`` on the job's data directory; or one of
``bench.systems.logstore_broker.CLIENTS``, connecting to the job's ``bootstrap``), the topic
and :class:`~bench.workloads.RunSpec`, and a file for the latency samples. Protocol on
stdout/stdin, one line each:

* a consumer prints ``ready`` once it is assigned, then reads ``total <n>`` from stdin (the
  number of records to wait for, known once the producer finished);
* both print one JSON object last: counts, timestamps (``time.monotonic_ns``), and the CPU
  seconds and disk bytes written by this process while its loop ran (not its start-up).

Samples (nanoseconds, ``array('q')`` machine format) go to the samples file.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from bench import drop_repository_root

# Run from the repository root, sys.path starts with it and its logstore/ folder would
# shadow the installed package (see bench.drop_repository_root): drop it before importing.
drop_repository_root()

import logstore  # noqa: E402 - after drop_repository_root()
from bench.driver import Expect, consume, produce  # noqa: E402 - after drop_repository_root()
from bench.payload import Payload  # noqa: E402 - after drop_repository_root()
from bench.resources import (  # noqa: E402 - after drop_repository_root()
    own_cpu_s,
    process_write_bytes,
)
from bench.systems.logstore_clients import (  # noqa: E402 - after drop_repository_root()
    LogstoreConsumer,
    LogstoreProducer,
)
from bench.workloads import RunSpec  # noqa: E402 - after drop_repository_root()


def main(argv: list[str]) -> int:
    job = json.loads(argv[1])
    spec = RunSpec(**job["spec"])
    client = job.get("client", "embedded")
    if client == "embedded":
        with logstore.open(job["data_dir"], maintenance_interval_ms=None) as log:
            if job["role"] == "produce":
                result = _produce(LogstoreProducer(log, job["topic"], job["mode"]), job, spec)
            else:
                result = _consume(LogstoreConsumer(log, job["topic"], spec.partitions), job,
                                  spec)
    else:
        from bench.systems.logstore_broker import kafka_consumer, kafka_producer

        if job["role"] == "produce":
            result = _produce(kafka_producer(client, job["bootstrap"], job["topic"]), job, spec)
        else:
            result = _consume(kafka_consumer(client, job["bootstrap"], job["topic"],
                                             spec.partitions), job, spec)
    result["logstore_file"] = logstore.__file__
    print(json.dumps(result), flush=True)
    return 0


def _measured(fn: Any) -> tuple[Any, dict[str, Any]]:
    cpu, written = own_cpu_s(), process_write_bytes()
    outcome = fn()
    written_after = process_write_bytes()
    return outcome, {
        "cpu_s": own_cpu_s() - cpu,
        "disk_write_bytes": None if written is None or written_after is None
        else written_after - written,
    }


def _produce(producer: Any, job: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    try:
        outcome, usage = _measured(lambda: produce(producer, Payload(spec.value_bytes), spec))
    finally:
        producer.close()
    with open(job["samples_path"], "wb") as f:
        outcome.ack_ns.tofile(f)
    return {"records": outcome.records, "started_ns": outcome.started_ns,
            "finished_ns": outcome.finished_ns, "failed_acks": outcome.failed_acks,
            "behind_schedule": outcome.behind_schedule, **usage}


def _consume(consumer: Any, job: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    expect = Expect()

    def read_total() -> None:
        for line in sys.stdin:
            if line.startswith("total "):
                expect.set(int(line.split()[1]))
                return

    threading.Thread(target=read_total, daemon=True).start()
    print("ready", flush=True)
    try:
        outcome, usage = _measured(lambda: consume(
            consumer, expect, measure_e2e=job["measure_e2e"], timeout_s=job["timeout_s"]))
    finally:
        consumer.close()
    with open(job["samples_path"], "wb") as f:
        outcome.e2e_ns.tofile(f)
    return {"records": outcome.records, "started_ns": outcome.started_ns,
            "last_ns": outcome.last_ns, "timed_out": outcome.timed_out, **usage}


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
