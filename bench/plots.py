"""PNG plots of a results document (matplotlib, Agg backend: no display needed).

* ``throughput``: max-rate produce MB/s and records/s, and backlog consume records/s, by value
  size, one line per system, one column per partition count, with the disk's sequential write
  bandwidth (fsync) drawn in.
* ``latency``: p50 / p99 / p99.9 / max of produce-ack and end-to-end latency in the fixed-rate
  run (50% of max rate), per system and value size, with the targets (5 ms, 10 ms) and the
  disk's fsync p50 drawn in; one partition.
* ``limit``: each system's max-rate produce bandwidth as a fraction of the disk's sequential
  write bandwidth, by value size and partition count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.targets import ACK_P99_GOAL_MS, DISK_FRACTION_GOAL, E2E_P99_GOAL_MS
from bench.workloads import BACKLOG, FIXED_RATE, MAX_RATE, size_label

PERCENTILES = (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"), ("max_ms", "max"))


def write_all(doc: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Write every plot as ``<stem>-<name>.png``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("throughput", throughput), ("latency", latency), ("limit", limit)):
        figure = draw(doc)
        path = out_dir / f"{stem}-{name}.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        paths.append(path)
    return paths


def _systems(doc: dict[str, Any]) -> list[str]:
    return [s["name"] for s in doc["systems"] if not s.get("skipped")]


def _value(doc: dict[str, Any], system: str, kind: str, partitions: int, size: int,
           key: str) -> float | None:
    for run in doc["runs"]:
        if (run["system"], run["kind"], run["partitions"], run["value_bytes"]) == (
                system, kind, partitions, size) and not run.get("error"):
            value = run.get(key)
            return float(value) if isinstance(value, (int, float)) else None
    return None


def throughput(doc: dict[str, Any]) -> Any:
    sizes = doc["settings"]["value_sizes"]
    partitions = doc["settings"]["partitions"]
    rows = (("max-rate produce", MAX_RATE, "produce_mb_per_s", "MB/s"),
            ("max-rate produce", MAX_RATE, "produce_records_per_s", "records/s"),
            ("backlog consume", BACKLOG, "consume_records_per_s", "records/s"))
    figure, axes = plt.subplots(len(rows), len(partitions), figsize=(6 * len(partitions), 12),
                                squeeze=False, sharex=True)
    disk = doc["limits"]["seq_write_fsync_bytes_per_s"] / 1e6
    for column, p in enumerate(partitions):
        for row, (title, kind, key, unit) in enumerate(rows):
            ax = axes[row][column]
            for system in _systems(doc):
                ys = [_value(doc, system, kind, p, s, key) for s in sizes]
                ax.plot(range(len(sizes)), [y if y is not None else float("nan") for y in ys],
                        marker="o", label=system)
            if row == 0:
                ax.axhline(disk, color="black", linestyle="--", linewidth=1,
                           label=f"disk sequential write ({disk:,.0f} MB/s)")
            ax.set_yscale("log")
            ax.set_title(f"{title}, {p} partition(s)")
            ax.set_ylabel(unit)
            ax.set_xticks(range(len(sizes)), [size_label(s) for s in sizes])
            ax.grid(True, which="both", alpha=0.3)
    _legend(figure, axes[0][0])
    figure.suptitle("Throughput by value size (one producer, one consumer)")
    return figure


def latency(doc: dict[str, Any]) -> Any:
    sizes = doc["settings"]["value_sizes"]
    partitions = doc["settings"]["partitions"][0]
    systems = _systems(doc)
    figure, axes = plt.subplots(2, len(sizes), figsize=(5 * len(sizes), 8), squeeze=False)
    fsync_p50 = doc["limits"]["fsync_latency"]["p50_ms"]
    width = 0.8 / max(1, len(systems))
    for column, size in enumerate(sizes):
        for row, (key, title, goal) in enumerate((("ack", "produce ack", ACK_P99_GOAL_MS),
                                                  ("e2e", "end-to-end", E2E_P99_GOAL_MS))):
            ax = axes[row][column]
            for i, system in enumerate(systems):
                summary = _summary(doc, system, partitions, size, key)
                heights = [summary[k] if summary else float("nan") for k, _ in PERCENTILES]
                ax.bar([x + i * width for x in range(len(PERCENTILES))], heights, width,
                       label=system)
            ax.axhline(goal, color="red", linestyle="--", linewidth=1,
                       label=f"p99 target: {ACK_P99_GOAL_MS:g} ms ack, "
                             f"{E2E_P99_GOAL_MS:g} ms end-to-end")
            ax.axhline(fsync_p50, color="black", linestyle=":", linewidth=1,
                       label=f"disk fsync p50 {fsync_p50:.2f} ms")
            ax.set_yscale("log")
            ax.set_xticks([x + 0.4 - width / 2 for x in range(len(PERCENTILES))],
                          [label for _, label in PERCENTILES])
            ax.set_title(f"{title}, {size_label(size)}, {partitions} partition(s)")
            ax.set_ylabel("ms")
            ax.grid(True, axis="y", which="both", alpha=0.3)
    _legend(figure, axes[0][0])
    figure.suptitle("Latency at 50% of max rate (coordinated omission corrected)")
    return figure


def _summary(doc: dict[str, Any], system: str, partitions: int, size: int,
             key: str) -> dict[str, float] | None:
    for run in doc["runs"]:
        if (run["system"], run["kind"], run["partitions"], run["value_bytes"]) == (
                system, FIXED_RATE, partitions, size) and not run.get("error"):
            summary: dict[str, float] | None = run.get(key)
            return summary
    return None


def limit(doc: dict[str, Any]) -> Any:
    sizes = doc["settings"]["value_sizes"]
    partitions = doc["settings"]["partitions"]
    systems = _systems(doc)
    figure, axes = plt.subplots(1, len(partitions), figsize=(6 * len(partitions), 4.5),
                                squeeze=False, sharey=True)
    width = 0.8 / max(1, len(systems))
    for column, p in enumerate(partitions):
        ax = axes[0][column]
        for i, system in enumerate(systems):
            ys = [_value(doc, system, MAX_RATE, p, s, "fraction_of_disk") for s in sizes]
            ax.bar([x + i * width for x in range(len(sizes))],
                   [y if y is not None else float("nan") for y in ys], width, label=system)
        ax.axhline(1.0, color="black", linewidth=1, label="disk sequential write bandwidth")
        ax.axhline(DISK_FRACTION_GOAL, color="red", linestyle="--", linewidth=1,
                   label="target for 1 KiB (50%)")
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(sizes))],
                      [size_label(s) for s in sizes])
        ax.set_title(f"produce bandwidth / disk bandwidth, {p} partition(s)")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("fraction of the machine's limit")
    _legend(figure, axes[0][0])
    return figure


def _legend(figure: Any, ax: Any) -> None:
    """One legend for the whole figure, below the plots, where it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
                  fontsize=9, frameon=False)
