"""Tiered storage: remote read throughput, PUTs per GB tiered, produce latency with a slow store.

Four measurements, in one run:

1. **Remote read throughput over S3 (real HTTP).** A moto server (``ThreadedMotoServer``, in a
   process of its own by default so that it does not share this process's GIL on a small
   machine; ``--moto-in-process`` runs it as the tests do) plays S3. ``--mb`` MB of
   ``--value-bytes`` values (random, incompressible) are produced into one partition of a topic
   with ``remote.storage.enable=true``, ``local.retention.bytes=0``, ``segment.bytes=
   --segment-bytes`` and ``durability=os`` (``Log.producer``, ``linger_ms=5``,
   ``batch_size=--batch-bytes``), and the active segment is rolled so every record is sealed.
   The partition is read from offset 0 sequentially with ``Log.fetch(..., max_bytes=1 MiB)``
   and with a ``Consumer`` in a fresh ``Log`` while still local (the data was just written:
   page cache warm), then tiered with ``Log.tier()`` (which drops every local copy), then read
   the same two ways again, each in a fresh ``Log`` (cold remote cache).
2. **Remote read throughput with a 50 ms first-byte latency per GET**, from a
   ``MemoryObjectStore`` holding the same segments (tiered from a copy of the same log):
   ``Log.fetch`` from offset 0 with the default ``remote_cache_bytes`` (64 MiB: chunk cache and
   the sequential reader's prefetch), the same with the prefetch patched out of
   ``RemotePartition`` (the cache alone: what the prefetch adds), and with
   ``remote_cache_bytes=0`` (no cache, no prefetch); plus the store without latency (the
   reader's own CPU cost). MB/s and GETs per MB read.
3. **PUT-class requests per GB tiered**, measured (memory store ``stats().put_requests``;
   S3 ``request_counts()`` over moto) at the benchmark's segment size and the default
   multipart settings (threshold and part size 64 MiB), and computed for the default
   ``segment.bytes`` (1 GiB) from the measured objects (a segment ends short of segment.bytes
   by less than one batch; the object adds an index entry per 256 KiB and a footer): one
   PutObject per object up to the threshold, else CreateMultipartUpload + one UploadPart per
   part + Complete. The
   formula is checked against moto with one object just over the threshold.
4. **Produce acknowledgement latency with a slow store.** Durable produce (topic
   ``durability=fsync``) of ``--rate`` records/s of 100 B values into one partition with a
   small ``segment.bytes`` (``--latency-segment-bytes``: many segments roll and get tiered
   during the run), for ``--latency-seconds``, through ``bench.driver.produce`` (the fixed-rate
   loop of ``python -m bench``: latencies count from each record's intended send time, so
   coordinated omission is corrected), producer ``linger_ms=0``. Three configurations: no
   remote storage; remote storage on a fast memory store with the background tierer
   (``tier_interval_ms=200``, ``local.retention.bytes=0``); the same with a slow store (every
   operation waits 500 ms, plus bytes / 5 MB/s). Each configuration runs ``--latency-rounds``
   times, interleaved (ABCABC), since a shared machine's load moves these figures more than
   anything else; the tables say how much CPU the rest of the machine used meanwhile.

    python -m bench.tiering --quick            # ~32 MB, 4 MiB segments, 5 s latency runs
    python -m bench.tiering                    # ~256 MB, 16 MiB segments, 20 s latency runs
    python -m bench.tiering --quick --profile  # also cProfile one remote fetch pass per store

Run from the repository root. Prints markdown tables and writes JSON to
``bench/results/tiering-<date>[-quick].json`` (``--out`` to change). Data goes to a temp dir
(``--dir``), removed at the end. Needs ``moto[server]`` for part 1 (skipped without it).
Caveat: moto answers a ranged GET by copying the whole object first, so GETs of larger objects
cost moto more than they would cost S3; its CPU is reported next to ours.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench import REPOSITORY_ROOT, drop_repository_root

drop_repository_root()

import logstore  # noqa: E402 - after drop_repository_root()
import logstore.embedded  # noqa: E402
from bench.driver import produce as produce_at_fixed_rate  # noqa: E402
from bench.latency import summarize  # noqa: E402
from bench.payload import Payload  # noqa: E402
from bench.resources import Meter  # noqa: E402
from bench.systems import LATENCY  # noqa: E402
from bench.systems.logstore_clients import CONSUMER_OPTIONS, LogstoreProducer  # noqa: E402
from bench.workloads import FIXED_RATE, RunSpec  # noqa: E402
from logstore.backends.memory_store import MemoryObjectStore  # noqa: E402
from logstore.backends.object_store import MiB  # noqa: E402
from logstore.tier.remote_format import FOOTER_SIZE, INDEX_ENTRY, iter_frames  # noqa: E402

TOPIC = "tiering-bench"
FETCH_MAX_BYTES = 1 << 20
DEFAULT_SEGMENT_BYTES = 1 << 30  # segment.bytes' default
DEFAULT_MULTIPART_BYTES = 64 * MiB  # S3ObjectStore's threshold and part size defaults
GB = 1e9
S3_REGION = "us-east-1"
BUCKET = "logstore-bench"

MODES: dict[str, dict[str, Any]] = {
    "full": {"mb": 256, "segment_bytes": 16 * MiB, "latency_seconds": 20.0, "latency_rounds": 2},
    "quick": {"mb": 32, "segment_bytes": 4 * MiB, "latency_seconds": 5.0, "latency_rounds": 1},
}


# --- PUT-class requests ----------------------------------------------------------------------


def put_requests_for(size: int, *, threshold: int = DEFAULT_MULTIPART_BYTES,
                     part_size: int = DEFAULT_MULTIPART_BYTES) -> int:
    """PUT-class requests of one upload: a PutObject up to ``threshold`` bytes, else
    CreateMultipartUpload + one UploadPart per part + CompleteMultipartUpload (as
    ``S3ObjectStore.put`` and ``MemoryObjectStore``'s ``put_requests``)."""
    if size <= threshold:
        return 1
    return 2 + -(-size // part_size)


def object_size_for(data_bytes: int, index_interval_bytes: int) -> int:
    """The size of a remote object whose data section is ``data_bytes`` of batches: data,
    about one index entry per ``index_interval_bytes`` (the first batch always has one),
    footer (no aborted transactions)."""
    entries = 1 + data_bytes // index_interval_bytes if data_bytes else 0
    return data_bytes + entries * INDEX_ENTRY.size + FOOTER_SIZE


def puts_at_segment_bytes(objects: list[dict[str, int]], segment_bytes: int, *,
                          target_segment_bytes: int, index_interval_bytes: int) -> dict[str, Any]:
    """PUT-class requests per GB if the segments measured (``objects``: data_bytes per object,
    at ``segment_bytes``) had been ``target_segment_bytes`` long. A segment rolls when the next
    batch would not fit, so it ends short of segment.bytes by less than one batch: that gap (in
    bytes, the mean over the measured objects but the last, a partial segment rolled by hand)
    is kept, not the fill ratio."""
    full = objects[:-1] if len(objects) > 1 else objects
    gap = sum(segment_bytes - o["data_bytes"] for o in full) // len(full)
    data = target_segment_bytes - gap
    size = object_size_for(data, index_interval_bytes)
    requests = put_requests_for(size)
    # Also the fullest a segment can get: data exactly segment.bytes.
    size_max = object_size_for(target_segment_bytes, index_interval_bytes)
    return {
        "segment_bytes": target_segment_bytes,
        "mean_gap_bytes": gap,
        "object_bytes": size,
        "put_requests_per_object": requests,
        "put_requests_per_gb": requests / (size / GB),
        "object_bytes_if_full": size_max,
        "put_requests_per_object_if_full": put_requests_for(size_max),
        "put_requests_per_gb_if_full": put_requests_for(size_max) / (size_max / GB),
        # The largest gap for which an object still needs one more part than data / part
        # size would suggest (index and footer push it over a part boundary).
        "index_and_footer_bytes": size_max - target_segment_bytes,
    }


# --- moto ------------------------------------------------------------------------------------

_MOTO_CHILD = """
import logging
import sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(host, port, flush=True)
sys.stdin.read()  # until the parent closes our stdin
server.stop()
"""


def _fake_aws_environment() -> None:
    """Fake credentials for moto, and no reading of the user's ~/.aws files (as the tests)."""
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    })
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)


@contextmanager
def moto_server(in_process: bool) -> Iterator[tuple[str, int | None]]:
    """(endpoint URL, pid of the server process or None when it runs in this one)."""
    _fake_aws_environment()
    if in_process:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}", None
        finally:
            server.stop()
        return
    child = subprocess.Popen([sys.executable, "-c", _MOTO_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if len(line) != 2:
            raise RuntimeError("the moto server did not start")
        yield f"http://{line[0]}:{line[1]}", child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def s3_store(endpoint: str) -> Any:
    from logstore.backends.s3_store import S3ObjectStore

    return S3ObjectStore(BUCKET, "bench", endpoint_url=endpoint, region=S3_REGION,
                         addressing_style="path")


def create_bucket(endpoint: str) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3", region_name=S3_REGION, endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    client.close()


# --- producing and reading -------------------------------------------------------------------


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


def fetch_all(log: logstore.Log, end: int) -> dict[str, Any]:
    """Read [0, end) with ``Log.fetch(max_bytes=1 MiB)``, sequentially; figures."""
    fetch = log.fetch
    position = total = fetches = 0
    started = time.perf_counter()
    while position < end:
        data = fetch(TOPIC, 0, position, max_bytes=FETCH_MAX_BYTES).records
        fetches += 1
        last = -1
        for _, _, _, last in iter_frames(data, 0, len(data)):
            pass
        if last < position:
            raise RuntimeError(f"fetch at {position} returned no batch ending at or after it")
        total += len(data)
        position = last + 1
    seconds = time.perf_counter() - started
    return {"bytes": total, "records": position, "fetches": fetches, "seconds": seconds,
            "mb_per_s": total / seconds / 1e6, "records_per_s": position / seconds}


def consume_all(log: logstore.Log, end: int, value_bytes: int) -> dict[str, Any]:
    """Read [0, end) with a Consumer (the benchmark suite's options); figures."""
    consumer = log.consumer(**CONSUMER_OPTIONS)
    consumer.assign([logstore.TopicPartition(TOPIC, 0)])
    count = 0
    started = time.perf_counter()
    try:
        while count < end:
            got = consumer.poll(timeout_ms=5000)
            if not got:
                raise RuntimeError(f"the consumer stalled after {count:,} of {end:,} records")
            count += len(got)
    finally:
        seconds = time.perf_counter() - started
        consumer.close()
    return {"records": count, "seconds": seconds, "records_per_s": count / seconds,
            "payload_mb_per_s": count * value_bytes / seconds / 1e6}


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


# --- 1 and 3: S3 over moto -------------------------------------------------------------------


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
                    out[name] = _metered(lambda: reader(log), pids)
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


def multipart_check(endpoint: str) -> dict[str, Any]:
    """One object just over the multipart threshold, through the S3 store over moto: the
    PUT-class requests it took, next to :func:`put_requests_for`."""
    size = DEFAULT_MULTIPART_BYTES + 1
    store = s3_store(endpoint)
    try:
        store.put("multipart-check/object", bytes(size))
        counts = store.request_counts()
        store.delete("multipart-check/object")
    finally:
        store.close()
    puts = sum(counts.get(k, 0) for k in ("PutObject", "CreateMultipartUpload", "UploadPart",
                                           "CompleteMultipartUpload"))
    return {"size_bytes": size, "requests": counts, "put_requests": puts,
            "formula": put_requests_for(size), "ok": puts == put_requests_for(size)}


# --- 2 and 3: memory store with latency ------------------------------------------------------


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
    original = RemotePartition._maybe_prefetch  # noqa: SLF001
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


# --- 4: produce latency ----------------------------------------------------------------------


LATENCY_CASES: tuple[tuple[str, str | None], ...] = (
    ("no remote storage", None),
    ("remote storage, fast memory store", "fast"),
    ("remote storage, slow memory store", "slow"),
)


def produce_latency(base: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every configuration ``args.latency_rounds`` times, interleaved (ABCABC), so that a
    machine shared with other work hurts them alike."""
    spec = RunSpec(FIXED_RATE, partitions=1, value_bytes=100, duration_s=args.latency_seconds,
                   rate_per_s=args.rate, samples_per_s=max(5000.0, args.rate))
    out = []
    for round_ in range(1, args.latency_rounds + 1):
        for i, (label, kind) in enumerate(LATENCY_CASES):
            run = _latency_run(base / f"latency-{round_}-{i}", label, kind, spec, args)
            run["round"] = round_
            out.append(run)
            _print_latency_row(run)
    return out


def _latency_run(directory: Path, label: str, kind: str | None, spec: RunSpec,
                 args: argparse.Namespace) -> dict[str, Any]:
    store = None if kind is None else MemoryObjectStore()
    config = {"segment.bytes": str(args.latency_segment_bytes), "durability": "fsync"}
    if store is not None:
        config.update({"remote.storage.enable": "true", "local.retention.bytes": "0"})
    log = logstore.open(directory, object_store=store, maintenance_interval_ms=None,
                        tier_interval_ms=args.tier_interval_ms)
    try:
        log.create_topic(TOPIC, partitions=1, config=config)
        if store is not None and kind == "slow":
            # After open (whose store check would wait too): every operation, GETs too.
            store.set_latency(None, first_byte_ms=args.slow_first_byte_ms,
                              bytes_per_s=args.slow_bytes_per_s)
        producer = LogstoreProducer(log, TOPIC, LATENCY)
        meter = Meter()
        meter.start()
        try:
            outcome = produce_at_fixed_rate(producer, Payload(100), spec)
        finally:
            producer.close()
        usage = meter.stop()
        ack = summarize(outcome.ack_ns)
        run: dict[str, Any] = {
            "label": label, "records": outcome.records,
            "seconds": (outcome.finished_ns - outcome.started_ns) / 1e9,
            "failed_acks": outcome.failed_acks, "behind_schedule": outcome.behind_schedule,
            "ack": None if ack is None else ack.__dict__, "cpu_s": usage.cpu_s,
            "other_cpu_s": usage.other_cpu_s,
        }
        status = log.tier_status(TOPIC)[0]
        run.update({
            "log_end_offset": status.log_end_offset,
            "local_segments_at_end": status.local_segments,
            "segments_rolled": status.local_segments + status.remote_objects - 1,
        })
        if store is not None:
            stats = store.stats()
            run.update({
                "segments_tiered": stats.puts, "bytes_tiered": stats.bytes_put,
                "lag_segments_at_end": status.lag_segments,
                "remote_end_offset": status.remote_end_offset,
            })
    finally:
        close_started = time.perf_counter()
        log.close()
    run["close_s"] = time.perf_counter() - close_started
    shutil.rmtree(directory, ignore_errors=True)
    return run


# --- output ----------------------------------------------------------------------------------


def _print_latency_row(run: dict[str, Any]) -> None:
    ack = run["ack"] or {}
    print(f"  {run['round']} {run['label']:36} p50 {ack.get('p50_ms', 0):7.2f} ms  p99 "
          f"{ack.get('p99_ms', 0):7.2f} ms  max {ack.get('max_ms', 0):8.2f} ms  "
          f"tiered {run.get('segments_tiered', '-')}", file=sys.stderr, flush=True)


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def tables(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    p = doc["produce"]
    lines = [
        f"{p['records']:,} records of {s['value_bytes']} B ({p['partition_bytes'] / 1e6:,.1f} MB "
        f"stored in {p['sealed_segments']} segments of segment.bytes {s['segment_bytes']:,}), "
        f"producer batch_size {s['batch_bytes']:,}; {doc['machine']}, Python {doc['python']}, "
        f"C accelerator {'on' if doc['accelerated'] else 'off'}; {doc['git']}; load average "
        f"{doc['load_before'][0]:.2f} before, {doc['load_after'][0]:.2f} after.",
        "",
    ]
    s3 = doc["s3"]
    mem = doc["memory"]
    lines += ["### 1. Sequential read of the whole partition, local vs remote (S3 = moto, "
              f"{s3.get('moto', '-')})", ""]
    if "skipped" in s3:
        lines.append(f"S3 part skipped: {s3['skipped']}")
    else:
        lines += ["| read | MB/s | records/s | seconds | CPU s (incl. moto) | GETs/MB | "
                  "other CPU s |", "|---|---:|---:|---:|---:|---:|---:|"]
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
        lines += ["", f"Tiering to S3 (Log.tier): {t['bytes'] / 1e6:,.1f} MB in {t['segments']} "
                  f"objects, {t['seconds']:,.1f} s, {t['mb_per_s']:,.1f} MB/s; requests "
                  f"{t['requests']}. Consumer MB/s: stored bytes over its time. Remote bytes "
                  f"and records equal local: {s3['remote_fetch']['same_as_local']}.", ""]
    lines += ["### 2. Remote Log.fetch from a memory store with GET latency", ""]
    if "skipped" in mem:
        lines += [f"Skipped: {mem['skipped']}", ""]
    else:
        lines += ["| store | remote_cache_bytes | MB/s | GETs/MB | bytes got / bytes read | "
                  "cache hits / misses / prefetches | seconds | other CPU s |",
                  "|---|---:|---:|---:|---:|---|---:|---:|"]
        for r in mem["reads"]:
            c = r["cache"] or {}
            lines.append(
                f"| {r['label']} | {r['remote_cache_bytes']:,} | {r['mb_per_s']:,.1f} | "
                f"{r['gets_per_mb']:.2f} | {r['bytes_got_per_byte_read']:.2f} | "
                f"{c.get('hits', '-')} / {c.get('misses', '-')} / {c.get('prefetches', '-')} | "
                f"{r['seconds']:,.2f} | {_f(r['other_cpu_s'])} |")
    lines += ["", "### 3. PUT-class requests per GB tiered (default multipart threshold and "
              "part size 64 MiB)", "",
              "| source | segment.bytes | objects | mean object | PUT-class requests | per GB |",
              "|---|---:|---:|---:|---:|---:|"]
    for row in doc["puts"]["rows"]:
        lines.append(f"| {row['source']} | {row['segment_bytes']:,} | {row['objects']} | "
                     f"{row['mean_object_bytes'] / 1e6:,.2f} MB | {row['put_requests']} | "
                     f"{row['per_gb']:,.1f} |")
    mc = doc["puts"].get("multipart_check")
    if mc:
        lines += ["", f"Formula check over moto: one {mc['size_bytes']:,} B object took "
                  f"{mc['put_requests']} PUT-class requests ({mc['requests']}); formula "
                  f"{mc['formula']}: {'OK' if mc['ok'] else 'MISMATCH'}."]
    lines += ["", f"### 4. Durable produce ack latency, {s['rate']:,.0f} records/s of 100 B "
              f"(durability=fsync, linger_ms=0), {s['latency_seconds']:g} s per run, "
              f"segment.bytes {s['latency_segment_bytes']:,}, tier_interval_ms "
              f"{s['tier_interval_ms']}, local.retention.bytes 0; slow store: every operation "
              f"{s['slow_store']['first_byte_ms']:g} ms + bytes / "
              f"{s['slow_store']['bytes_per_s'] / 1e6:g} MB/s", "",
              "| round | configuration | records | p50 ms | p99 ms | p99.9 ms | max ms | "
              "segments rolled | tiered | tierer lag at end | CPU s | other CPU s |",
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


def puts_rows(doc: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    mem = doc["memory"]
    s3 = doc["s3"]
    objects = mem.get("objects") or s3.get("objects")
    if not objects:
        return {"rows": rows, "multipart_check": s3.get("multipart_check")}
    if "skipped" not in mem:
        t = mem["tier"]
        rows.append({"source": "measured: memory store put_requests", "segment_bytes":
                     args.segment_bytes, "objects": t["puts"], "put_requests": t["put_requests"],
                     "mean_object_bytes": t["bytes_put"] / max(1, t["puts"]),
                     "per_gb": t["put_requests"] / (t["bytes_put"] / GB)})
    if "skipped" not in s3:
        req = s3["tier"]["requests"]
        uploads = sum(req.get(k, 0) for k in ("PutObject", "CreateMultipartUpload",
                                              "UploadPart", "CompleteMultipartUpload"))
        size = sum(o["size_bytes"] for o in s3["objects"])
        rows.append({"source": "measured: S3 request_counts over moto (uploads)",
                     "segment_bytes": args.segment_bytes, "objects": len(s3["objects"]),
                     "put_requests": uploads, "mean_object_bytes": size / len(s3["objects"]),
                     "per_gb": uploads / (size / GB)})
    from logstore.tier.remote_format import DEFAULT_INDEX_INTERVAL_BYTES

    computed = puts_at_segment_bytes(objects, args.segment_bytes,
                                     target_segment_bytes=DEFAULT_SEGMENT_BYTES,
                                     index_interval_bytes=DEFAULT_INDEX_INTERVAL_BYTES)
    rows.append({"source": f"computed: segments short of segment.bytes by the measured mean "
                           f"gap ({computed['mean_gap_bytes']:,} B)",
                 "segment_bytes": DEFAULT_SEGMENT_BYTES, "objects": 1,
                 "put_requests": computed["put_requests_per_object"],
                 "mean_object_bytes": computed["object_bytes"],
                 "per_gb": computed["put_requests_per_gb"]})
    rows.append({"source": "computed: segments filled exactly to segment.bytes",
                 "segment_bytes": DEFAULT_SEGMENT_BYTES, "objects": 1,
                 "put_requests": computed["put_requests_per_object_if_full"],
                 "mean_object_bytes": computed["object_bytes_if_full"],
                 "per_gb": computed["put_requests_per_gb_if_full"]})
    return {"rows": rows, "computed_default_segment": computed,
            "multipart_check": s3.get("multipart_check")}


def profile_text(name: str, summary: dict[str, Any], top: int = 15) -> str:
    lines = [f"cProfile of one remote Log.fetch pass ({name}; {summary['wall_s']:.2f} s, "
             f"{summary['mb_per_s_under_profiler']:,.1f} MB/s under the profiler; this thread "
             "only, prefetch threads not shown):", ""]
    for key, label in (("by_cumtime", "cumulative"), ("by_tottime", "own (tottime)")):
        lines += [f"| top by {label} | calls | own s | cumulative s |", "|---|---:|---:|---:|"]
        for r in summary[key][:top]:
            lines.append(f"| `{r['function']}` | {r['calls']:,} | {r['tottime_s']:.3f} "
                         f"| {r['cumtime_s']:.3f} |")
        lines.append("")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def source_digests() -> dict[str, str]:
    """Short SHA-256 of the sources this benchmark exercises (others edit them meanwhile: a
    result is tied to these)."""
    import hashlib

    root = REPOSITORY_ROOT
    files = sorted((root / "logstore" / "tier").glob("*.py"))
    files += [root / "logstore" / "log" / name for name in ("tiering.py", "read.py", "append.py")]
    files += [root / "logstore" / "embedded.py"]
    files += [root / "backends" / name for name in ("memory_store.py", "s3_store.py",
                                                    "object_store.py", "sql_manifest.py")]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
            for f in files if f.exists()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tiering",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="32 MB, 4 MiB segments, 5 s latency runs (under 2 minutes)")
    parser.add_argument("--mb", type=int, help="MB of values to produce (256; --quick 32)")
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--batch-bytes", type=int, default=16384,
                        help="producer batch_size for the read data (16384, Kafka's default)")
    parser.add_argument("--segment-bytes", type=int,
                        help="segment.bytes of the read data (16 MiB; --quick 4 MiB)")
    parser.add_argument("--get-latency-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="records/s (latency runs)")
    parser.add_argument("--latency-seconds", type=float, help="length of each latency run "
                        "(20; --quick 5)")
    parser.add_argument("--latency-rounds", type=int,
                        help="times each latency configuration runs, interleaved (2; --quick 1)")
    parser.add_argument("--latency-segment-bytes", type=int, default=256 * 1024)
    parser.add_argument("--tier-interval-ms", type=int, default=200)
    parser.add_argument("--slow-first-byte-ms", type=float, default=500.0)
    parser.add_argument("--slow-bytes-per-s", type=float, default=5_000_000.0)
    parser.add_argument("--moto-in-process", action="store_true",
                        help="run moto's server as a thread of this process (as the tests do)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("s3", "memory", "latency"),
                        help="parts to leave out")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one remote fetch pass per store (not timed runs)")
    parser.add_argument("--dir", type=Path, help="where data goes (default: the temp dir)")
    parser.add_argument("--out", type=Path, help="JSON output path")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bench.compaction import git_describe
    from logstore.records.speedups import accelerated

    mode = "quick" if args.quick else "full"
    defaults = MODES[mode]
    args.mb = args.mb or defaults["mb"]
    args.segment_bytes = args.segment_bytes or defaults["segment_bytes"]
    args.latency_seconds = args.latency_seconds or defaults["latency_seconds"]
    args.latency_rounds = args.latency_rounds or defaults["latency_rounds"]
    started_all = time.monotonic()
    load_before = list(os.getloadavg())
    sources_before = source_digests()
    base = Path(tempfile.mkdtemp(prefix="logstore-tiering-bench-", dir=args.dir))
    print(f"data in {base}", file=sys.stderr, flush=True)
    doc: dict[str, Any] = {}
    try:
        print(f"producing {args.mb} MB ...", file=sys.stderr, flush=True)
        produced = produce_data(base / "data", args)
        print(f"  {produced['seconds']:.1f} s, {produced['payload_mb_per_s']:,.1f} MB/s, "
              f"{produced['sealed_segments']} segments", file=sys.stderr, flush=True)
        if "s3" in args.skip:
            s3: dict[str, Any] = {"skipped": "--skip s3"}
        else:
            print("S3 (moto): local reads, tiering, remote reads ...", file=sys.stderr,
                  flush=True)
            s3 = s3_reads(base, base / "data", produced, args)
        if "memory" in args.skip:
            memory: dict[str, Any] = {"skipped": "--skip memory"}
        else:
            print("memory store: tiering, remote reads with GET latency ...", file=sys.stderr,
                  flush=True)
            memory = memory_reads(base, base / "data", produced, args)
        shutil.rmtree(base / "data", ignore_errors=True)
        latency: list[dict[str, Any]] = []
        if "latency" not in args.skip:
            print("produce latency ...", file=sys.stderr, flush=True)
            latency = produce_latency(base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    doc = {
        "benchmark": "tiering",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.tiering", *(argv or sys.argv[1:])]),
        "mode": mode,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} "
                   f"{platform.release()}",
        "accelerated": accelerated(),
        "logstore_path": str(Path(logstore.__file__).resolve().parent),
        "git": git_describe(),
        "commit": subprocess.run(["git", "-C", str(REPOSITORY_ROOT), "rev-parse", "HEAD"],
                                 capture_output=True, text=True, check=False).stdout.strip(),
        "elapsed_s": time.monotonic() - started_all,
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
        "sources": sources_before,
        "sources_changed_during_run": sorted(
            k for k, v in source_digests().items() if sources_before.get(k) != v),
        "settings": {
            "mb": args.mb, "value_bytes": args.value_bytes, "batch_bytes": args.batch_bytes,
            "segment_bytes": args.segment_bytes, "fetch_max_bytes": FETCH_MAX_BYTES,
            "get_latency_ms": args.get_latency_ms, "rate": args.rate,
            "latency_seconds": args.latency_seconds, "latency_rounds": args.latency_rounds,
            "latency_segment_bytes": args.latency_segment_bytes,
            "tier_interval_ms": args.tier_interval_ms,
            "slow_store": {"first_byte_ms": args.slow_first_byte_ms,
                           "bytes_per_s": args.slow_bytes_per_s, "operations": "all"},
            "consumer_options": CONSUMER_OPTIONS,
            "multipart_threshold_bytes": DEFAULT_MULTIPART_BYTES,
            "part_size_bytes": DEFAULT_MULTIPART_BYTES,
        },
        "produce": produced,
        "s3": s3,
        "memory": memory,
        "latency": latency,
    }
    doc["puts"] = puts_rows(doc, args)
    out = args.out or REPOSITORY_ROOT / "bench" / "results" / (
        f"tiering-{dt.date.today().isoformat()}{'-quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print()
    print(tables(doc))
    for name, part in (("S3 over moto", s3), ("memory store, no latency", memory)):
        if "profile" in part:
            print()
            print(profile_text(name, part["profile"]))
    if doc["sources_changed_during_run"]:
        print(f"WARNING: these sources changed during the run: "
              f"{', '.join(doc['sources_changed_during_run'])}")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
