"""The markdown tables of a tiering run, built from its JSON document alone."""

from __future__ import annotations

from typing import Any


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def tables(doc: dict[str, Any]) -> str:
    """The four parts' tables."""
    s = doc["settings"]
    p = doc["produce"]
    lines = [
        (f"{p['records']:,} records of {s['value_bytes']} B ({p['partition_bytes'] / 1e6:,.1f} MB "
        f"stored in {p['sealed_segments']} segments of segment.bytes {s['segment_bytes']:,}), "
        f"producer batch_size {s['batch_bytes']:,}; {doc['machine']}, Python {doc['python']}, "
        f"C accelerator {'on' if doc['accelerated'] else 'off'}; {doc['git']}; load average "
        f"{doc['load_before'][0]:.2f} before, {doc['load_after'][0]:.2f} after."),
        "",
    ]
    s3 = doc["s3"]
    mem = doc["memory"]
    lines += [("### 1. Sequential read of the whole partition, local vs remote (S3 = moto, "
              f"{s3.get('moto', '-')})"), ""]
    if "skipped" in s3:
        lines.append(f"S3 part skipped: {s3['skipped']}")
    else:
        lines += [("| read | MB/s | records/s | seconds | CPU s (incl. moto) | GETs/MB | "
                  "other CPU s |"), "|---|---:|---:|---:|---:|---:|---:|"]
        for key, label in (("local_fetch", "local, Log.fetch(max_bytes=1 MiB)"),
                           ("remote_fetch", "remote S3, Log.fetch(max_bytes=1 MiB)"),
                           ("local_consumer", "local, Consumer.poll"),
                           ("remote_consumer", "remote S3, Consumer.poll")):
            r = s3[key]
            mb = r.get("mb_per_s") or (p["partition_bytes"] / r["seconds"] / 1e6)
            gets = r.get("requests", {}).get("GetObject")
            gpm = None if gets is None else gets / (p["partition_bytes"] / 1e6)
            lines.append(f"| {label} | {mb:,.1f} | {r['records_per_s']:,.0f} | "
                         f"{r['seconds']:,.2f} | {r['cpu_s']:,.1f} | {_f(gpm, 2)} | "
                         f"{_f(r['other_cpu_s'])} |")
        t = s3["tier"]
        lines += ["", (f"Tiering to S3 (Log.tier): {t['bytes'] / 1e6:,.1f} MB in {t['segments']} "
                  f"objects, {t['seconds']:,.1f} s, {t['mb_per_s']:,.1f} MB/s; requests "
                  f"{t['requests']}. Consumer MB/s: stored bytes over its time. Remote bytes "
                  f"and records equal local: {s3['remote_fetch']['same_as_local']}."), ""]
    lines += ["### 2. Remote Log.fetch from a memory store with GET latency", ""]
    if "skipped" in mem:
        lines += [f"Skipped: {mem['skipped']}", ""]
    else:
        lines += [("| store | remote_cache_bytes | MB/s | GETs/MB | bytes got / bytes read | "
                  "cache hits / misses / prefetches | seconds | other CPU s |"),
                  "|---|---:|---:|---:|---:|---|---:|---:|"]
        for r in mem["reads"]:
            c = r["cache"] or {}
            lines.append(
                f"| {r['label']} | {r['remote_cache_bytes']:,} | {r['mb_per_s']:,.1f} | "
                f"{r['gets_per_mb']:.2f} | {r['bytes_got_per_byte_read']:.2f} | "
                f"{c.get('hits', '-')} / {c.get('misses', '-')} / {c.get('prefetches', '-')} | "
                f"{r['seconds']:,.2f} | {_f(r['other_cpu_s'])} |")
    lines += ["", ("### 3. PUT-class requests per GB tiered (default multipart threshold and "
              "part size 64 MiB)"), "",
              "| source | segment.bytes | objects | mean object | PUT-class requests | per GB |",
              "|---|---:|---:|---:|---:|---:|"]
    for row in doc["puts"]["rows"]:
        lines.append(f"| {row['source']} | {row['segment_bytes']:,} | {row['objects']} | "
                     f"{row['mean_object_bytes'] / 1e6:,.2f} MB | {row['put_requests']} | "
                     f"{row['per_gb']:,.1f} |")
    mc = doc["puts"].get("multipart_check")
    if mc:
        lines += ["", (f"Formula check over moto: one {mc['size_bytes']:,} B object took "
                  f"{mc['put_requests']} PUT-class requests ({mc['requests']}); formula "
                  f"{mc['formula']}: {'OK' if mc['ok'] else 'MISMATCH'}.")]
    lines += ["", (f"### 4. Durable produce ack latency, {s['rate']:,.0f} records/s of 100 B "
              f"(durability=fsync, linger_ms=0), {s['latency_seconds']:g} s per run, "
              f"segment.bytes {s['latency_segment_bytes']:,}, tier_interval_ms "
              f"{s['tier_interval_ms']}, local.retention.bytes 0; slow store: every operation "
              f"{s['slow_store']['first_byte_ms']:g} ms + bytes / "
              f"{s['slow_store']['bytes_per_s'] / 1e6:g} MB/s"), "",
              ("| round | configuration | records | p50 ms | p99 ms | p99.9 ms | max ms | "
              "segments rolled | tiered | tierer lag at end | CPU s | other CPU s |"),
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["latency"]:
        a = r["ack"] or {}
        lines.append(f"| {r['round']} | {r['label']} | {r['records']:,} | "
                     f"{_f(a.get('p50_ms'), 2)} | {_f(a.get('p99_ms'), 2)} | "
                     f"{_f(a.get('p999_ms'), 2)} | {_f(a.get('max_ms'), 2)} | "
                     f"{r['segments_rolled']} | {r.get('segments_tiered', '-')} | "
                     f"{r.get('lag_segments_at_end', '-')} | {r['cpu_s']:,.1f} | "
                     f"{_f(r['other_cpu_s'])} |")
    return "\n".join(lines)


def profile_text(name: str, summary: dict[str, Any], top: int = 15) -> str:
    """The top functions of a cProfile'd remote fetch pass (``reads._profiled``)."""
    lines = [(f"cProfile of one remote Log.fetch pass ({name}; {summary['wall_s']:.2f} s, "
             f"{summary['mb_per_s_under_profiler']:,.1f} MB/s under the profiler; this thread "
             "only, prefetch threads not shown):"), ""]
    for key, label in (("by_cumtime", "cumulative"), ("by_tottime", "own (tottime)")):
        lines += [f"| top by {label} | calls | own s | cumulative s |", "|---|---:|---:|---:|"]
        for r in summary[key][:top]:
            lines.append(f"| `{r['function']}` | {r['calls']:,} | {r['tottime_s']:.3f} "
                         f"| {r['cumtime_s']:.3f} |")
        lines.append("")
    return "\n".join(lines)
