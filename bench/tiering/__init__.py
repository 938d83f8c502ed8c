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

Modules: ``cli`` (options, the run, the JSON document; ``__main__`` runs it), ``reads`` (parts 1
and 2), ``puts`` (part 3), ``latency`` (part 4), ``moto_s3`` (the moto server and the S3 store
over it), ``report`` (the markdown tables, built from the JSON document alone).
"""

from __future__ import annotations

from bench import drop_repository_root

# Before any module of this package imports logstore (see bench.drop_repository_root).
drop_repository_root()

TOPIC = "tiering-bench"
