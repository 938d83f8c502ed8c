"""The results document (JSON), its markdown tables, and the files they are written to.

Units: MB = 10^6 bytes, GB = 10^9 bytes, latencies in milliseconds. Derived figures:

* produce rate: records (bytes) acknowledged / seconds from the first send to the last
  acknowledgement; consume rate: records (bytes) received / seconds from the first send
  (max-rate, fixed-rate) or the start of consumption (backlog) to the last record received;
* ``fraction_of_disk``: produce bytes/s over the sequential write bandwidth with fsync;
* per phase, ``cpu_s_per_gb``: CPU seconds (client processes and, for Redis and NATS, the
  server) per GB of payload, ``write_amplification``: bytes written to disk per payload
  byte, and ``other_cpus``: how many CPUs everything else on the machine kept busy on
  average meanwhile (a shared machine's noise, shown next to the latencies).

The markdown is built from the JSON document alone, so ``python -m bench --from-json`` can
render a saved run again.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.limits import Limits
from bench.targets import evaluate
from bench.workloads import BACKLOG, FIXED_RATE, MAX_RATE, RunResult, size_label


def run_record(system: str, durability: str, result: RunResult, limits: Limits) -> dict[str, Any]:
    """A run as a JSON-ready dict, with its derived figures."""
    record: dict[str, Any] = dataclasses.asdict(result)
    spec = record.pop("spec")
    record = {"system": system, "durability": durability, "kind": spec["kind"],
              "partitions": spec["partitions"], "value_bytes": spec["value_bytes"],
              "spec": spec, **record}
    value_bytes = spec["value_bytes"]
    produce_rate = result.produced / result.produce_s if result.produce_s > 0 else 0.0
    consume_rate = result.consumed / result.consume_s if result.consume_s > 0 else 0.0
    record["produce_records_per_s"] = produce_rate
    record["produce_mb_per_s"] = produce_rate * value_bytes / 1e6
    record["consume_records_per_s"] = consume_rate
    record["consume_mb_per_s"] = consume_rate * value_bytes / 1e6
    record["fraction_of_disk"] = produce_rate * value_bytes / limits.seq_write_fsync_bytes_per_s
    for phase in record["phases"]:
        payload = phase["payload_bytes"]
        phase["cpu_s_per_gb"] = phase["cpu_s"] / (payload / 1e9) if payload else None
        server = phase.get("server_cpu_s")
        phase["server_cpu_s_per_gb"] = (
            server / (payload / 1e9) if payload and server is not None else None)
        written = phase["disk_write_bytes"]
        phase["write_amplification"] = (
            written / payload if payload and written is not None else None)
        other, wall = phase["other_cpu_s"], phase["wall_s"]
        phase["other_cpus"] = other / wall if other is not None and wall > 0 else None
    return record


def write(doc: dict[str, Any], out_dir: Path, stem: str, *, latest: bool) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` (and ``latest.md`` if asked); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(doc)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(text)
    paths = [json_path, md_path]
    if latest:
        latest_path = out_dir / "latest.md"
        latest_path.write_text(text)
        paths.append(latest_path)
    return paths


def markdown(doc: dict[str, Any]) -> str:
    """The whole report: setting, limits, systems, three tables, targets."""
    parts = [
        f"# logstore benchmark, {doc['date'][:10]}",
        _setting(doc),
        _limits(doc),
        _systems(doc),
        "## Throughput\n\n" + _throughput(doc),
        "## Latency at 50% of the max rate (fixed-rate run, coordinated omission corrected)\n\n"
        + _latency(doc, FIXED_RATE),
        "## Latency at the max rate\n\n" + _latency(doc, MAX_RATE),
        "## Targets\n\n" + targets_table(doc),
    ]
    if doc.get("plots"):
        parts.append("## Plots\n\n" + "\n".join(
            f"![{Path(p).stem}]({Path(p).name})" for p in doc["plots"]))
    return "\n\n".join(parts) + "\n"


def _setting(doc: dict[str, Any]) -> str:
    m, s = doc["machine"], doc["settings"]
    accelerator = "on" if m.get("accelerated") else "off"
    other = doc.get("other_cpu_s")
    busy = "" if other is None else (
        f" Other processes used {other:,.0f} CPU-seconds while the runs were measured "
        f"({other / max(doc['elapsed_s'], 1):.2f} of {m['cpus']} CPUs on average), so "
        "figures from a shared machine vary between runs.")
    return (
        f"Command: `{doc['command']}` (run from the repository root; {doc['mode']} mode, "
        f"{doc['elapsed_s'] / 60:.1f} min). Machine: {m['cpus']} CPUs, {m['memory_gib']:.0f} GiB, "
        f"{m['platform']}, Python {m['python']}, logstore {m['logstore']} "
        f"({m.get('logstore_source', 'source not recorded')}; C accelerator "
        f"{accelerator}). Load average {m['load_before'][0]:.2f} before, "
        f"{m['load_after'][0]:.2f} after.{busy}\n\n"
        f"Runs: one topic of {' and '.join(map(str, s['partitions']))} partitions; values of "
        f"{', '.join(size_label(v) for v in s['value_sizes'])}; one producer and one consumer. "
        f"Max-rate runs of {s['duration_s']:g} s, fixed-rate runs of {s['fixed_duration_s']:g} s "
        f"at 50% of the max-rate run's produce rate, backlog runs of what the max-rate run "
        f"produced in {s['duration_s']:g} s (at most {s['backlog_max_bytes'] / 1e6:,.0f} MB). "
        f"Latencies are exact percentiles of the records timed: about "
        f"{s['samples_per_s']:,.0f} per second, every n-th record (systematic sampling). "
        "MB = 10^6 bytes."
    )


def _limits(doc: dict[str, Any]) -> str:
    lim = doc["limits"]
    f = lim["fsync_latency"]
    samples = ", ".join(f"{b / 1e6:,.0f}" for b in lim.get("seq_write_fsync_samples", []))
    return (
        f"## Machine limits\n\nMeasured with {lim['tool']} in `{lim['directory']}` at the "
        f"start of the run: {lim['size_bytes'] / 2**20:,.0f} MiB of sequential 1 MiB writes, "
        f"the median of {len(lim.get('seq_write_fsync_samples', [])) or 1} tries (with fsync: "
        f"{samples} MB/s); fsync latency of 4 KiB appends each followed by fdatasync.\n\n"
        "| sequential write, fsync at end | sequential write, no fsync | fsync of a 4 KiB "
        "append, p50 / p99 / p99.9 / max |\n|---:|---:|---:|\n"
        f"| {lim['seq_write_fsync_bytes_per_s'] / 1e6:,.0f} MB/s "
        f"| {lim['seq_write_buffered_bytes_per_s'] / 1e6:,.0f} MB/s "
        f"| {_ms(f['p50_ms'])} / {_ms(f['p99_ms'])} / {_ms(f['p999_ms'])} / {_ms(f['max_ms'])} ms |"
    )


def _systems(doc: dict[str, Any]) -> str:
    lines = ["## Systems\n", "| system | durability class | configuration |", "|---|---|---|"]
    for s in doc["systems"]:
        config = f"skipped: {s['skipped']}" if s.get("skipped") else s["config"]
        lines.append(f"| {s['name']} | {s['durability']} | {config} |")
    lines.append(
        "\nDurability classes: **fsync**, an acknowledged write survives power loss (logstore "
        "`durability=fsync`: SQLite `synchronous=FULL`; Redis `appendfsync always`); **os**, "
        "it survives a crash of the process but not of the machine (logstore `durability=os`; "
        "Redis `appendfsync everysec`; JetStream file storage, written before the "
        "acknowledgement and fsynced every `sync_interval`).")
    return "\n".join(lines)


def _throughput(doc: dict[str, Any]) -> str:
    lines = [
        ("Max-rate run: producer and consumer at once. Backlog run: produce with nobody "
         "consuming, then consume everything from the start. CPU per GB of payload (client "
         "processes plus the Redis/NATS server) and write amplification (bytes written to disk "
         "per payload byte, `/proc/<pid>/io`) are from the backlog run's two phases.\n"),
        ("| system | part. | value | produce rec/s | produce MB/s | % of disk | consume rec/s "
         "| consume MB/s | backlog produce rec/s | backlog consume rec/s | CPU s/GB produce "
         "/ consume | write amp. | others' CPUs |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, partitions, value_bytes in _cells(doc):
        top = _run(doc, system, MAX_RATE, partitions, value_bytes)
        backlog = _run(doc, system, BACKLOG, partitions, value_bytes)
        cells = [system, str(partitions), size_label(value_bytes)]
        if top is None or top.get("error"):
            cells += [_failed(top)] + [""] * 4
        else:
            cells += [_n(top["produce_records_per_s"]), f"{top['produce_mb_per_s']:,.1f}",
                      f"{100 * top['fraction_of_disk']:.0f}%", _n(top["consume_records_per_s"]),
                      f"{top['consume_mb_per_s']:,.1f}"]
        if backlog is None or backlog.get("error"):
            cells += [_failed(backlog), "", "", ""]
        else:
            produce, consume = backlog["phases"]
            amplification = produce["write_amplification"]
            cells += [_n(backlog["produce_records_per_s"]), _n(backlog["consume_records_per_s"]),
                      f"{produce['cpu_s_per_gb']:.1f} / {consume['cpu_s_per_gb']:.1f}",
                      "n/a" if amplification is None else f"{amplification:.2f}"]
        cells.append(_others(top))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _latency(doc: dict[str, Any], kind: str) -> str:
    intro = (
        "Produce ack: from the intended send time to the acknowledgement. End-to-end: from "
        "the intended send time to the consumer receiving the record. A rate marked * fell "
        "behind its schedule (the producer could not send at the asked rate).\n"
        if kind == FIXED_RATE else
        "The same percentiles while producing as fast as possible (from the actual send "
        "time): mostly the time records wait in queues, for comparison only.\n")
    intro += ("Others' CPUs: how many of the machine's CPUs other processes kept busy during "
              "the run, on average.\n")
    lines = [
        intro,
        ("| system | part. | value | rate rec/s | ack p50 | ack p99 | ack p99.9 | ack max "
         "| e2e p50 | e2e p99 | e2e p99.9 | e2e max | others' CPUs |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, partitions, value_bytes in _cells(doc):
        run = _run(doc, system, kind, partitions, value_bytes)
        cells = [system, str(partitions), size_label(value_bytes)]
        if run is None or run.get("error"):
            cells += [_failed(run)] + [""] * 9
        else:
            late = "*" if run.get("behind_schedule") else ""
            cells.append(_n(run["produce_records_per_s"]) + late)
            for key in ("ack", "e2e"):
                summary = run.get(key)
                cells += ([_ms(summary[k]) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")]
                          if summary else ["n/a"] * 4)
            cells.append(_others(run))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\nLatencies in ms.")
    return "\n".join(lines)


def targets_table(doc: dict[str, Any]) -> str:
    """Every target figure against its goal."""
    lines = ["| target | subject | measured | met |", "|---|---|---|:-:|"]
    for row in evaluate(doc):
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        lines.append(f"| {row['target']} | {row['subject']} | {row['text']} | {met} |")
    return "\n".join(lines)


def _cells(doc: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(system, partitions, value size) of every system that ran, in the document's order."""
    seen: dict[tuple[str, int, int], None] = {}
    for run in doc["runs"]:
        seen.setdefault((run["system"], run["partitions"], run["value_bytes"]), None)
    return list(seen)


def _run(doc: dict[str, Any], system: str, kind: str, partitions: int,
         value_bytes: int) -> dict[str, Any] | None:
    for run in doc["runs"]:
        if (run["system"], run["kind"], run["partitions"], run["value_bytes"]) == (
                system, kind, partitions, value_bytes):
            return run
    return None


def _others(run: dict[str, Any] | None) -> str:
    """Others' average CPU use during a run (its first phase), e.g. ``0.35``."""
    if not run or not run.get("phases") or run["phases"][0].get("other_cpus") is None:
        return "n/a"
    return f"{run['phases'][0]['other_cpus']:.2f}"


def _failed(run: dict[str, Any] | None) -> str:
    if run is None:
        return "not run"
    return f"failed: {run['error']}"


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"
