"""The issue's targets, evaluated on a results document (see ``report``).

1. Embedded produce of 100 B values >= 5x Redis Streams and >= 10x NATS JetStream through
   their Python clients, at matched durability: each peer is compared with the embedded
   logstore of its durability class (``fsync``: Redis ``appendfsync always``; ``os``: Redis
   ``everysec`` and JetStream), max-rate run (a consumer running too), records/s, for each
   partition count. The text also gives the ratio in the backlog run (producing alone).
2. Embedded produce of 1 KiB values >= 50% of the sequential write bandwidth (with fsync)
   measured in the same run, max-rate run, for each durability and partition count.
3. Durable (``durability=fsync``) produce-acknowledgement p99 <= 5 ms at 50% of the max rate
   (fixed-rate run, coordinated omission corrected), every logstore system, partition count
   and value size.
4. End-to-end p99 <= 10 ms in the same runs.

The broker's (issue 12), for ``logstore-broker (confluent)``, 100 B values:

5. Produce >= 500,000 records/s (max-rate run) and consume >= 1,000,000 records/s (the
   backlog run's consume phase: reading what is there, not tailing a slower producer).
6. The broker process's CPU per GB at most 2x the embedded path's (``durability=fsync``, the
   whole process: clients and storage), in each phase of the backlog run.
7. Produce-acknowledgement p99 <= 10 ms at 50% of the max rate (fixed-rate run).
"""

from __future__ import annotations

from typing import Any

from bench.workloads import size_label

EMBEDDED = "logstore-embedded"
BROKER = "logstore-broker (confluent)"
BROKER_PRODUCE_GOAL = 500_000.0
BROKER_CONSUME_GOAL = 1_000_000.0
BROKER_CPU_RATIO_GOAL = 2.0
BROKER_ACK_P99_GOAL_MS = 10.0
PEER_GOALS = {"redis-streams": 5.0, "nats-jetstream": 10.0}
DISK_FRACTION_GOAL = 0.5
ACK_P99_GOAL_MS = 5.0
E2E_P99_GOAL_MS = 10.0


def find(doc: dict[str, Any], system: str, kind: str, partitions: int,
         value_bytes: int) -> dict[str, Any] | None:
    """The run of ``system`` with this shape, if it ran without error."""
    for run in doc["runs"]:
        if (run["system"], run["kind"], run["partitions"], run["value_bytes"]) == (
                system, kind, partitions, value_bytes) and not run.get("error"):
            return run
    return None


def _row(target: str, subject: str, measured: float | None, goal: float, text: str,
         higher_is_better: bool) -> dict[str, Any]:
    met = None if measured is None else (
        measured >= goal if higher_is_better else measured <= goal)
    return {"target": target, "subject": subject, "measured": measured, "goal": goal,
            "text": text if measured is not None else "not measured", "met": met}


def evaluate(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (target, subject): measured value, goal, and whether it is met (None when
    the figure is missing: a system skipped or a run failed)."""
    systems = {s["name"]: s for s in doc["systems"] if not s.get("skipped")}
    return [*_peer_rows(doc, systems), *_disk_rows(doc, systems), *_latency_rows(doc, systems),
            *_broker_rows(doc, systems)]


def _peer_rows(doc: dict[str, Any], systems: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if 100 not in doc["settings"]["value_sizes"]:
        return rows
    for name, system in systems.items():
        family = next((f for f in PEER_GOALS if name.startswith(f)), None)
        if family is None:
            continue
        mine = f"{EMBEDDED} ({system['durability']})"
        goal = PEER_GOALS[family]
        for p in doc["settings"]["partitions"]:
            ours = find(doc, mine, "max-rate", p, 100)
            theirs = find(doc, name, "max-rate", p, 100)
            ratio, text = None, ""
            if ours and theirs and theirs["produce_records_per_s"]:
                ratio = ours["produce_records_per_s"] / theirs["produce_records_per_s"]
                text = (f"{ratio:.1f}x ({ours['produce_records_per_s']:,.0f} vs "
                        f"{theirs['produce_records_per_s']:,.0f} rec/s)")
                alone = _alone_ratio(doc, mine, name, p)
                if alone is not None:
                    text += f"; producing alone (backlog run) {alone:.1f}x"
            rows.append(_row(f"100 B produce >= {goal:g}x {family}",
                             f"{mine} vs {name}, {p} partition(s)", ratio, goal, text, True))
    return rows


def _alone_ratio(doc: dict[str, Any], mine: str, theirs: str, partitions: int) -> float | None:
    """The same comparison in the backlog run, where no consumer runs during production."""
    ours_alone = find(doc, mine, "backlog", partitions, 100)
    theirs_alone = find(doc, theirs, "backlog", partitions, 100)
    if not ours_alone or not theirs_alone or not theirs_alone["produce_records_per_s"]:
        return None
    ratio: float = ours_alone["produce_records_per_s"] / theirs_alone["produce_records_per_s"]
    return ratio


def _disk_rows(doc: dict[str, Any], systems: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if 1024 not in doc["settings"]["value_sizes"]:
        return rows
    limit_mb_s = doc["limits"]["seq_write_fsync_bytes_per_s"] / 1e6
    slowest_mb_s = min(doc["limits"].get("seq_write_fsync_samples") or [limit_mb_s * 1e6]) / 1e6
    for durability in ("fsync", "os"):
        mine = f"{EMBEDDED} ({durability})"
        if mine not in systems:
            continue
        for p in doc["settings"]["partitions"]:
            run = find(doc, mine, "max-rate", p, 1024)
            fraction, text = None, ""
            if run is not None:
                fraction = run["fraction_of_disk"]
                text = (f"{100 * fraction:.0f}% ({run['produce_mb_per_s']:.0f} of "
                        f"{limit_mb_s:.0f} MB/s)")
                if slowest_mb_s < limit_mb_s:
                    text += (f"; {100 * run['produce_mb_per_s'] / slowest_mb_s:.0f}% of the "
                             f"slowest try ({slowest_mb_s:.0f} MB/s)")
            rows.append(_row("1 KiB produce >= 50% of sequential write bandwidth",
                             f"{mine}, {p} partition(s)", fraction, DISK_FRACTION_GOAL, text,
                             True))
    return rows


def _latency_rows(doc: dict[str, Any], systems: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, system in systems.items():
        if (not name.startswith("logstore") or name.startswith("logstore-broker")
                or system["durability"] != "fsync"):
            continue
        for value_bytes in doc["settings"]["value_sizes"]:
            for p in doc["settings"]["partitions"]:
                run = find(doc, name, "fixed-rate", p, value_bytes)
                subject = f"{name}, {p} partition(s), {size_label(value_bytes)}"
                for key, goal, label in (("ack", ACK_P99_GOAL_MS, "produce ack"),
                                         ("e2e", E2E_P99_GOAL_MS, "end-to-end")):
                    p99, text = None, ""
                    if run is not None and run.get(key):
                        p99 = run[key]["p99_ms"]
                        late = " (behind schedule)" if run.get("behind_schedule") else ""
                        text = f"{p99:.2f} ms at {run['produce_records_per_s']:,.0f} rec/s{late}"
                    rows.append(_row(f"durable {label} p99 <= {goal:g} ms at 50% of max rate",
                                     subject, p99, goal, text, False))
    return rows


def _broker_rows(doc: dict[str, Any], systems: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if BROKER not in systems or 100 not in doc["settings"]["value_sizes"]:
        return rows
    embedded = f"{EMBEDDED} (fsync)"
    for p in doc["settings"]["partitions"]:
        subject = f"{BROKER}, {p} partition(s), 100 B"
        top = find(doc, BROKER, "max-rate", p, 100)
        rate = top["produce_records_per_s"] if top else None
        rows.append(_row(f"broker produce >= {BROKER_PRODUCE_GOAL:,.0f} rec/s", subject, rate,
                         BROKER_PRODUCE_GOAL, f"{rate:,.0f} rec/s" if rate else "", True))
        backlog = find(doc, BROKER, "backlog", p, 100)
        rate = backlog["consume_records_per_s"] if backlog else None
        rows.append(_row(f"broker consume >= {BROKER_CONSUME_GOAL:,.0f} rec/s (backlog)",
                         subject, rate, BROKER_CONSUME_GOAL,
                         f"{rate:,.0f} rec/s" if rate else "", True))
        ours = find(doc, embedded, "backlog", p, 100)
        for index, phase in enumerate(("produce", "consume")):
            ratio, text = None, ""
            if backlog and ours:
                broker_phase, embedded_phase = backlog["phases"][index], ours["phases"][index]
                server = broker_phase.get("server_cpu_s_per_gb")
                if server is not None and embedded_phase["cpu_s_per_gb"]:
                    ratio = server / embedded_phase["cpu_s_per_gb"]
                    text = (f"{ratio:.2f}x ({server:.1f} vs {embedded_phase['cpu_s_per_gb']:.1f}"
                            f" CPU s/GB; with the clients {broker_phase['cpu_s_per_gb']:.1f})")
            rows.append(_row(f"broker CPU/GB ({phase}) <= {BROKER_CPU_RATIO_GOAL:g}x embedded",
                             f"{BROKER} vs {embedded}, {p} partition(s), 100 B", ratio,
                             BROKER_CPU_RATIO_GOAL, text, False))
        run = find(doc, BROKER, "fixed-rate", p, 100)
        p99 = run["ack"]["p99_ms"] if run and run.get("ack") else None
        text = f"{p99:.2f} ms at {run['produce_records_per_s']:,.0f} rec/s" if run and p99 else ""
        rows.append(_row(f"broker produce ack p99 <= {BROKER_ACK_P99_GOAL_MS:g} ms at 50% of "
                         "max rate", subject, p99, BROKER_ACK_P99_GOAL_MS, text, False))
    return rows
