"""Part 3: PUT-class requests per GB tiered, measured and computed for the default
``segment.bytes`` (1 GiB) at the default multipart settings (threshold and part size 64 MiB).

An upload is one PutObject up to the threshold, else CreateMultipartUpload + one UploadPart
per part + CompleteMultipartUpload; :func:`multipart_check` checks that formula against moto
with one object just over the threshold.
"""

from __future__ import annotations

import argparse
from typing import Any

from logstore.backends.object_store import MiB, put_request_count

from bench.tiering.moto_s3 import s3_store
from logstore.tier.remote_format import DEFAULT_INDEX_INTERVAL_BYTES, FOOTER_SIZE, INDEX_ENTRY

DEFAULT_SEGMENT_BYTES = 1 << 30  # segment.bytes' default
DEFAULT_MULTIPART_BYTES = 64 * MiB  # S3ObjectStore's threshold and part size defaults
GB = 1e9
_UPLOAD_REQUESTS = ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")


def put_requests_for(size: int, *, threshold: int = DEFAULT_MULTIPART_BYTES,
                     part_size: int = DEFAULT_MULTIPART_BYTES) -> int:
    """PUT-class requests of one upload: a PutObject up to ``threshold`` bytes, else
    CreateMultipartUpload + one UploadPart per part + CompleteMultipartUpload (as
    ``S3ObjectStore.put`` and ``MemoryObjectStore``'s ``put_requests``)."""
    return put_request_count(size, threshold=threshold, part_size=part_size)


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
    puts = sum(counts.get(k, 0) for k in _UPLOAD_REQUESTS)
    return {"size_bytes": size, "requests": counts, "put_requests": puts,
            "formula": put_requests_for(size), "ok": puts == put_requests_for(size)}


def puts_rows(doc: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The rows of the PUT table, from the read parts' results in ``doc`` (``doc["puts"]``)."""
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
        uploads = sum(req.get(k, 0) for k in _UPLOAD_REQUESTS)
        size = sum(o["size_bytes"] for o in s3["objects"])
        rows.append({"source": "measured: S3 request_counts over moto (uploads)",
                     "segment_bytes": args.segment_bytes, "objects": len(s3["objects"]),
                     "put_requests": uploads, "mean_object_bytes": size / len(s3["objects"]),
                     "per_gb": uploads / (size / GB)})
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
