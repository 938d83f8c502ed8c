"""Parts 1 and 2: sequential read throughput of one partition, local vs remote.

:func:`produce_data` writes the data once; :func:`s3_reads` reads a copy locally, tiers it to
S3 over moto and reads it remotely (part 1, plus the S3 request counts of part 3);
:func:`memory_reads` tiers another copy to a ``MemoryObjectStore`` and reads it with a GET
first-byte latency, with and without the remote cache and its prefetch (part 2).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from logstore.backends.memory_store import MemoryObjectStore

import logstore
import logstore.embedded
from bench.driver import Expect, consume
from bench.latency import NS_PER_S
from bench.resources import Meter
from bench.systems.logstore_clients import LogstoreConsumer
from bench.tiering import TOPIC
from bench.tiering.moto_s3 import create_bucket, moto_server, s3_store
from bench.tiering.puts import multipart_check
from logstore.tier.remote_format import iter_frames

FETCH_MAX_BYTES = 1 << 20
CONSUMER_STALL_S = 5.0  # a consumer that gets nothing for this long has stalled


def produce_data(directory: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write ``args.mb`` MB of values into a remote-storage topic (no object store needed to
    write), roll the active segment; return the figures."""
    records = args.mb * 1_000_000 // args.value_bytes
    filler = os.urandom(4096 + args.value_bytes)
    values = [filler[i * 61:i * 61 + args.value_bytes] for i in range(64)]
    config = {"remote.storage.enable": "true", "local.retention.bytes": "0",
              "segment.bytes": str(args.segment_bytes), "durability": "os"}
    with logstore.open(directory, maintenance_interval_ms=None) as log:
        log.create_topic(TOPIC, partitions=1, config=config)
        started = time.perf_counter()
        with log.producer(linger_ms=5, batch_size=args.batch_bytes) as producer:
            send = producer.send
            for i in range(records):
                send(TOPIC, values[i & 63], partition=0)
            producer.flush()
        seconds = time.perf_counter() - started
        log.partition_log(TOPIC, 0).roll()
        described = log.describe_topic(TOPIC).partitions[0]
    return {"records": records, "seconds": seconds, "records_per_s": records / seconds,
            "payload_mb_per_s": records * args.value_bytes / seconds / 1e6,
            "partition_bytes": described.size_bytes, "log_end_offset": described.log_end_offset,
            "sealed_segments": described.segment_count - 1}


# --- the two readers -------------------------------------------------------------------------


def fetch_all(log: logstore.Log, end: int) -> dict[str, Any]:
    """Read [0, end) with ``Log.fetch(max_bytes=1 MiB)``, sequentially; figures."""
    fetch = log.fetch
    position = total = fetches = 0
    started = time.perf_counter()
    while position < end:
        data = fetch(TOPIC, 0, position, max_bytes=FETCH_MAX_BYTES).records
        fetches += 1
        last = -1
        for _, _, _, batch_last in iter_frames(data, 0, len(data)):
            last = batch_last
        if last < position:
            raise RuntimeError(f"fetch at {position} returned no batch ending at or after it")
        total += len(data)
        position = last + 1
    seconds = time.perf_counter() - started
    return {"bytes": total, "records": position, "fetches": fetches, "seconds": seconds,
            "mb_per_s": total / seconds / 1e6, "records_per_s": position / seconds}


def consume_all(log: logstore.Log, end: int, value_bytes: int) -> dict[str, Any]:
    """Read [0, end) with a Consumer (the benchmark suite's options and consume loop)."""
    consumer = LogstoreConsumer(log, TOPIC, 1)
    try:
        outcome = consume(consumer, Expect(end), measure_e2e=False, timeout_s=CONSUMER_STALL_S)
    finally:
        consumer.close()
    if outcome.timed_out:
        raise RuntimeError(f"the consumer stalled after {outcome.records:,} of {end:,} records")
    count = outcome.records
    seconds = max(outcome.last_ns - outcome.started_ns, 1) / NS_PER_S
    return {"records": count, "seconds": seconds, "records_per_s": count / seconds,
            "payload_mb_per_s": count * value_bytes / seconds / 1e6}


# --- helpers ---------------------------------------------------------------------------------


def _metered(fn: Any, pids: list[int]) -> dict[str, Any]:
    meter = Meter(pids)
    meter.start()
    result = fn()
    usage = meter.stop()
    result["cpu_s"] = usage.cpu_s  # this process, plus the moto server's process if separate
    result["other_cpu_s"] = usage.other_cpu_s
    return result


def _remote_objects(log: logstore.Log) -> list[dict[str, int]]:
    record = log.metadata.get_topic(TOPIC)
    assert record is not None
    from logstore.backends.manifest_records import COPY_FINISHED

    rows = log.metadata.remote_segments(record.topic_id, 0, states=[COPY_FINISHED])
    return [{"base_offset": r.base_offset, "size_bytes": r.size_bytes,
             "data_bytes": r.data_bytes} for r in sorted(rows, key=lambda r: r.base_offset)]


def _all_remote(log: logstore.Log) -> dict[str, Any]:
    status = log.tier_status(TOPIC)[0]
    return {"first_local_offset": status.first_local_offset,
            "log_end_offset": status.log_end_offset, "local_segments": status.local_segments,
            "remote_objects": status.remote_objects, "remote_bytes": status.remote_bytes,
            "all_remote": status.first_local_offset == status.log_end_offset}


def _tier(log: logstore.Log) -> dict[str, Any]:
    started = time.perf_counter()
    report = log.tier(TOPIC)
    seconds = time.perf_counter() - started
    if report.failed:
        raise RuntimeError(f"tiering failed: {report.failed}")
    local = sum(p.local_segments_deleted for p in report.partitions)
    return {"seconds": seconds, "segments": report.segments_copied,
            "bytes": report.bytes_copied, "mb_per_s": report.bytes_copied / seconds / 1e6,
            "local_segments_deleted": local}


def _same_data(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["bytes"] == b["bytes"] and a["records"] == b["records"]


def _cache_stats(log: logstore.Log) -> Any:
    """The remote chunk cache's counters (through the partition's RemotePartition), or None."""
    remote = getattr(log.partition_log(TOPIC, 0), "remote", None)
    storage = getattr(remote, "storage", None)
    cache = getattr(storage, "cache", None)
    return None if cache is None else cache.stats()


@contextmanager
def _prefetch_disabled(disabled: bool) -> Iterator[None]:
    """With ``disabled``, RemotePartition's sequential-read prefetch does nothing (a patch of
    this process's class, undone on exit): the cache alone, without read-ahead."""
    from logstore.tier.remote_storage import RemotePartition

    if not disabled:
        yield
        return
    original = RemotePartition._maybe_prefetch
    RemotePartition._maybe_prefetch = lambda self, *args, **kwargs: None  # type: ignore
    try:
        yield
    finally:
        RemotePartition._maybe_prefetch = original  # type: ignore[method-assign]


def _profiled(fn: Any, path: Path) -> dict[str, Any]:
    import cProfile

    from bench.compaction import profile_summary

    profiler = cProfile.Profile()
    profiler.enable()
    started = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - started
    profiler.disable()
    profiler.dump_stats(path)
    summary = profile_summary(path)
    summary["wall_s"] = wall
    summary["mb_per_s_under_profiler"] = result["bytes"] / wall / 1e6
    return summary


# --- 1 (and 3): S3 over moto -----------------------------------------------------------------


def s3_reads(base: Path, data_dir: Path, produced: dict[str, Any],
             args: argparse.Namespace) -> dict[str, Any]:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"moto[server] is not installed: {exc}"}
    end = produced["log_end_offset"]
    directory = base / "s3"
    shutil.copytree(data_dir, directory)
    out: dict[str, Any] = {"moto": "in this process" if args.moto_in_process
                           else "a separate process"}
    with moto_server(args.moto_in_process) as (endpoint, pid):
        pids = [pid] if pid is not None else []
        create_bucket(endpoint)
        # Local reads first (a fresh Log each: empty in-process caches, warm page cache).
        with logstore.open(directory, maintenance_interval_ms=None) as log:
            out["local_fetch"] = _metered(lambda: fetch_all(log, end), [])
        with logstore.open(directory, maintenance_interval_ms=None) as log:
            out["local_consumer"] = _metered(
                lambda: consume_all(log, end, args.value_bytes), [])
        store = s3_store(endpoint)
        try:
            with logstore.open(directory, object_store=store, tier_interval_ms=None,
                               maintenance_interval_ms=None) as log:
                before = store.request_counts()
                out["tier"] = _metered(lambda: _tier(log), pids)
                after = store.request_counts()
                out["tier"]["requests"] = {k: after.get(k, 0) - before.get(k, 0)
                                           for k in after if after.get(k, 0) != before.get(k, 0)}
                out["objects"] = _remote_objects(log)
                out["placement"] = _all_remote(log)
        finally:
            store.close()
        if not out["placement"]["all_remote"]:
            raise RuntimeError(f"not everything was tiered: {out['placement']}")
        for name, reader in (("remote_fetch", lambda log: fetch_all(log, end)),
                             ("remote_consumer",
                              lambda log: consume_all(log, end, args.value_bytes))):
            store = s3_store(endpoint)
            try:
                with logstore.open(directory, object_store=store, tier_interval_ms=None,
                                   maintenance_interval_ms=None) as log:
                    out[name] = _metered(functools.partial(reader, log), pids)
                    out[name]["requests"] = store.request_counts()
            finally:
                store.close()
        out["remote_fetch"]["same_as_local"] = _same_data(out["remote_fetch"], out["local_fetch"])
        gets = out["remote_fetch"]["requests"].get("GetObject", 0)
        out["remote_fetch"]["gets_per_mb"] = gets / (out["remote_fetch"]["bytes"] / 1e6)
        if args.profile:
            store = s3_store(endpoint)
            try:
                with logstore.open(directory, object_store=store, tier_interval_ms=None,
                                   maintenance_interval_ms=None) as log:
                    out["profile"] = _profiled(lambda: fetch_all(log, end), base / "s3.prof")
            finally:
                store.close()
        out["multipart_check"] = multipart_check(endpoint)
    shutil.rmtree(directory, ignore_errors=True)
    return out


# --- 2 (and 3): memory store with latency ----------------------------------------------------


def memory_reads(base: Path, data_dir: Path, produced: dict[str, Any],
                 args: argparse.Namespace) -> dict[str, Any]:
    end = produced["log_end_offset"]
    directory = base / "memory"
    shutil.copytree(data_dir, directory)
    store = MemoryObjectStore("tiering-bench")
    out: dict[str, Any] = {}
    with logstore.open(directory, object_store=store, tier_interval_ms=None,
                       maintenance_interval_ms=None) as log:
        store.reset_stats()
        out["tier"] = _metered(lambda: _tier(log), [])
        stats = store.stats()
        out["tier"].update({"puts": stats.puts, "put_requests": stats.put_requests,
                            "bytes_put": stats.bytes_put, "calls": dict(stats.calls)})
        out["objects"] = _remote_objects(log)
        out["placement"] = _all_remote(log)
    if not out["placement"]["all_remote"]:
        raise RuntimeError(f"not everything was tiered: {out['placement']}")
    runs = []
    slow = f"GET first byte {args.get_latency_ms:g} ms"
    cases = [("no latency", 0.0, None, True), (slow, args.get_latency_ms, None, True),
             (slow + ", prefetch patched out", args.get_latency_ms, None, False),
             (slow, args.get_latency_ms, 0, True)]
    from logstore.tier.remote_storage import RemotePartition

    if not hasattr(RemotePartition, "_maybe_prefetch"):
        cases = [c for c in cases if c[3]]  # the library changed: cannot patch it out
    for label, latency_ms, cache_bytes, prefetch in cases:
        store.clear_faults()
        if latency_ms:
            store.set_latency("get", first_byte_ms=latency_ms)
        store.reset_stats()
        options: dict[str, Any] = {} if cache_bytes is None else {"remote_cache_bytes": cache_bytes}
        with logstore.open(directory, object_store=store, tier_interval_ms=None,
                           maintenance_interval_ms=None, **options) as log, \
                _prefetch_disabled(not prefetch):
            run = _metered(lambda: fetch_all(log, end), [])
            cache = _cache_stats(log)
        stats = store.stats()
        gets = stats.calls.get("get", 0)
        run.update({
            "label": label, "get_first_byte_ms": latency_ms,
            "remote_cache_bytes": logstore.embedded.DEFAULT_REMOTE_CACHE_BYTES
            if cache_bytes is None else cache_bytes,
            "gets": gets, "bytes_got": stats.bytes_got,
            "gets_per_mb": gets / (run["bytes"] / 1e6),
            "bytes_got_per_byte_read": stats.bytes_got / run["bytes"],
            "cache": None if cache is None else {
                "hits": cache.hits, "misses": cache.misses, "prefetches": cache.prefetches,
                "evictions": cache.evictions},
        })
        runs.append(run)
    out["reads"] = runs
    store.clear_faults()
    if args.profile:
        with logstore.open(directory, object_store=store, tier_interval_ms=None,
                           maintenance_interval_ms=None) as log:
            out["profile"] = _profiled(lambda: fetch_all(log, end), base / "memory.prof")
    MemoryObjectStore.forget("tiering-bench")
    shutil.rmtree(directory, ignore_errors=True)
    return out
