"""The ObjectStore contract: every test runs against memory, local files, S3 through moto
in-process and S3 through moto's HTTP server (the ``object_store`` fixture in conftest.py).

Store-specific behaviour (fault injection, file layout, retries, multipart details) is tested in
test_memory_store.py, test_local_store.py and test_s3_store.py.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from logstore.backends.object_store import ObjectInfo, ObjectStore, abort_stale_uploads

from logstore.errors import (
    InvalidArgumentError,
    LogstoreError,
    ObjectNotFoundError,
    ObjectRangeError,
    PreconditionFailedError,
)

TEN = b"0123456789"
SEGMENT_KEY = "topics/orders/0000000003/00000000000000000000-00000000000000000099-0a1b2c.log"


def pattern(size: int) -> bytes:
    """Deterministic bytes in which every 4-byte word differs from its neighbours, so a part
    misplaced or repeated by a multipart upload would not go unnoticed."""
    return b"".join(i.to_bytes(4, "big") for i in range(size // 4 + 1))[:size]


def test_implements_the_protocol(object_store: ObjectStore) -> None:
    assert isinstance(object_store, ObjectStore)
    assert isinstance(object_store.url, str) and object_store.url


def test_put_get_head_round_trip(object_store: ObjectStore) -> None:
    info = object_store.put(SEGMENT_KEY, TEN)

    assert isinstance(info, ObjectInfo)
    assert (info.key, info.size_bytes) == (SEGMENT_KEY, 10)
    assert info.etag
    assert info.last_modified_ms > 1_600_000_000_000
    assert object_store.get(SEGMENT_KEY) == TEN
    head = object_store.head(SEGMENT_KEY)
    assert head is not None
    assert (head.key, head.size_bytes, head.etag) == (SEGMENT_KEY, 10, info.etag)


def test_overwrite_replaces_the_object_and_its_etag(object_store: ObjectStore) -> None:
    first = object_store.put("k", b"first version")
    second = object_store.put("k", b"second, longer version")

    assert object_store.get("k") == b"second, longer version"
    assert second.etag != first.etag
    head = object_store.head("k")
    assert head is not None and head.size_bytes == len(b"second, longer version")


def test_empty_object(object_store: ObjectStore) -> None:
    info = object_store.put("empty", b"")

    assert info.size_bytes == 0
    assert object_store.get("empty") == b""
    assert object_store.get("empty", start=0, end=5) == b""
    head = object_store.head("empty")
    assert head is not None and head.size_bytes == 0
    with pytest.raises(ObjectRangeError):
        object_store.get("empty", start=1)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, TEN),
        (0, 10, TEN),
        (2, 5, b"234"),
        (9, None, b"9"),
        (7, 100, b"789"),  # an end beyond the size is clamped: a short read
        (0, 0, b""),  # start == end: empty
        (5, 5, b""),
        (10, None, b""),  # start == size: empty, the end of the object
        (10, 10, b""),
        (10, 20, b""),
    ],
)
def test_ranged_get(
    object_store: ObjectStore, start: int, end: int | None, expected: bytes
) -> None:
    object_store.put("r", TEN)

    assert object_store.get("r", start=start, end=end) == expected


@pytest.mark.parametrize(("start", "end"), [(11, None), (11, 12), (11, 11), (1000, 2000)])
def test_ranged_get_starting_beyond_the_end_is_a_typed_error(
    object_store: ObjectStore, start: int, end: int | None
) -> None:
    object_store.put("r", TEN)

    with pytest.raises(ObjectRangeError) as caught:
        object_store.get("r", start=start, end=end)
    assert not caught.value.retriable


@pytest.mark.parametrize(("start", "end"), [(-1, None), (5, 4), (0, -1), ("1", None), (0, 2.5)])
def test_invalid_ranges_are_rejected(object_store: ObjectStore, start: Any, end: Any) -> None:
    object_store.put("r", TEN)

    with pytest.raises(InvalidArgumentError):
        object_store.get("r", start=start, end=end)


@pytest.mark.parametrize(("start", "end"), [(0, None), (3, 7), (4, 4), (0, 0)])
def test_missing_objects(object_store: ObjectStore, start: int, end: int | None) -> None:
    object_store.put("present", TEN)

    with pytest.raises(ObjectNotFoundError) as caught:
        object_store.get("absent", start=start, end=end)
    assert not caught.value.retriable
    assert object_store.head("absent") is None
    assert object_store.head("presen") is None  # a prefix of a key is not an object


def test_list_is_sorted_and_filters_by_string_prefix(object_store: ObjectStore) -> None:
    # '-' < '/' < '0' in byte order: a folder-by-folder walk would get this order wrong.
    # (No key is both an object and a folder: the local store cannot hold "a/b" and "a/b/c".)
    keys = ["a/b/c", "a/b-", "a/bc", "a-b", "a0", "b", "a/b/d/e", "a/ü", "a/z"]
    for i, key in enumerate(keys):
        object_store.put(key, b"x" * i)

    everything = list(object_store.list())
    assert [info.key for info in everything] == sorted(keys)
    assert sorted(keys)[:3] == ["a-b", "a/b-", "a/b/c"]
    assert {info.key: info.size_bytes for info in everything} == {k: i for i, k in enumerate(keys)}
    assert [i.key for i in object_store.list("a/b")] == ["a/b-", "a/b/c", "a/b/d/e", "a/bc"]
    assert [i.key for i in object_store.list("a/b/")] == ["a/b/c", "a/b/d/e"]
    assert [i.key for i in object_store.list("a/")] == sorted(k for k in keys if k[:2] == "a/")
    assert list(object_store.list("nothing/")) == []
    assert list(object_store.list("a/b/c")) == [object_store.head("a/b/c")]


def test_list_pages_through_many_keys(object_store: ObjectStore) -> None:
    # The S3 stores of the fixture list 7 keys per page: 40 keys take 6 pages.
    keys = [f"topics/t/{p:010d}/{o:020d}.log" for p in range(2) for o in range(0, 2000, 100)]
    for key in reversed(keys):
        object_store.put(key, key.encode())

    assert [info.key for info in object_store.list("topics/")] == keys
    assert [info.key for info in object_store.list("topics/t/0000000001/")] == keys[20:]


def test_list_validates_its_prefix(object_store: ObjectStore) -> None:
    for prefix in ["/a", "a/../", "a\\b", "a\x00", "..//"]:
        with pytest.raises(InvalidArgumentError):
            list(object_store.list(prefix))


def test_delete_is_idempotent(object_store: ObjectStore) -> None:
    object_store.put("a/x", TEN)
    object_store.put("a/y", TEN)

    object_store.delete("a/x")
    object_store.delete("a/x")
    object_store.delete("never/existed")

    assert object_store.head("a/x") is None
    with pytest.raises(ObjectNotFoundError):
        object_store.get("a/x")
    assert [info.key for info in object_store.list()] == ["a/y"]


def test_if_none_match(object_store: ObjectStore) -> None:
    object_store.put("once", b"first", if_none_match=True)

    with pytest.raises(PreconditionFailedError) as caught:
        object_store.put("once", b"second", if_none_match=True)
    assert not caught.value.retriable
    assert caught.value.maybe_own_write is False
    assert object_store.get("once") == b"first"

    object_store.delete("once")
    object_store.put("once", b"third", if_none_match=True)
    assert object_store.get("once") == b"third"


def test_concurrent_if_none_match_has_one_winner(
    object_store: ObjectStore, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params.get("object_store", "").startswith("s3"):
        # The S3 store only sends If-None-Match; atomicity is the server's. Moto checks and
        # then writes without a lock, so under load two racers can both win there (seen in
        # CI): the test would measure moto, not this code. Sequential refusal is tested above.
        pytest.skip("moto's conditional put is not atomic; AWS S3's is")
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def racer(n: int) -> None:
        barrier.wait()
        try:
            object_store.put("contended", f"writer {n}".encode(), if_none_match=True)
            outcomes.append(f"writer {n}")
        except PreconditionFailedError:
            outcomes.append("lost")

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [o for o in outcomes if o != "lost"]
    assert len(outcomes) == 6 and len(winners) == 1
    assert object_store.get("contended") == winners[0].encode()


@pytest.mark.parametrize("source", ["path", "file", "unseekable"])
def test_large_streamed_put_round_trips(
    object_store: ObjectStore, tmp_path: Path, source: str
) -> None:
    # 12 MiB + 3 bytes: with the fixture's 5 MiB threshold the S3 stores upload three parts.
    data = pattern(12 * 1024 * 1024 + 3)
    path = tmp_path / "segment.log"
    path.write_bytes(data)

    if source == "path":
        info = object_store.put(SEGMENT_KEY, path)
    elif source == "file":
        with open(path, "rb") as f:
            info = object_store.put(SEGMENT_KEY, f)
    else:
        read_end, write_end = os.pipe()
        writer = threading.Thread(target=lambda: (os.write(write_end, data), os.close(write_end)))
        writer.start()
        with open(read_end, "rb", buffering=0) as pipe:
            info = object_store.put(SEGMENT_KEY, pipe)  # type: ignore[arg-type]
        writer.join()

    assert info.size_bytes == len(data)
    head = object_store.head(SEGMENT_KEY)
    assert head is not None and head.size_bytes == len(data)
    assert object_store.get(SEGMENT_KEY) == data
    boundary = 5 * 1024 * 1024
    assert (
        object_store.get(SEGMENT_KEY, start=boundary - 5, end=boundary + 5)
        == (data[boundary - 5 : boundary + 5])
    )
    assert object_store.get(SEGMENT_KEY, start=len(data) - 2) == data[-2:]
    assert list(object_store.list_incomplete_uploads()) == []


def test_large_put_with_if_none_match(object_store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(pattern(6 * 1024 * 1024))
    object_store.put("big", b"already here")

    with pytest.raises(PreconditionFailedError):
        object_store.put("big", path, if_none_match=True)

    assert object_store.get("big") == b"already here"
    assert list(object_store.list_incomplete_uploads()) == []
    object_store.delete("big")
    assert object_store.put("big", path, if_none_match=True).size_bytes == 6 * 1024 * 1024


def test_put_reads_a_file_object_from_its_current_position(object_store: ObjectStore) -> None:
    stream = io.BytesIO(b"skip me|keep me")
    stream.seek(8)

    object_store.put("k", stream)

    assert object_store.get("k") == b"keep me"
    assert not stream.closed


@pytest.mark.parametrize("data", [bytearray(b"abc"), memoryview(b"xabcx")[1:4]])
def test_put_accepts_bytes_like_data(object_store: ObjectStore, data: Any) -> None:
    object_store.put("k", data)

    assert object_store.get("k") == b"abc"


@pytest.mark.parametrize("data", ["a str is ambiguous", 42, None, io.StringIO("text")])
def test_put_rejects_other_data(object_store: ObjectStore, data: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        object_store.put("k", data)
    assert object_store.head("k") is None


def test_put_of_a_missing_file_is_an_invalid_argument(
    object_store: ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgumentError):
        object_store.put("k", tmp_path / "missing")
    assert object_store.head("k") is None


BAD_KEYS = [
    "",
    "/absolute",
    "trailing/",
    "a//b",
    ".",
    "..",
    "./a",
    "a/./b",
    "a/../b",
    "../escape",
    "a\\b",
    "a\x00b",
    "line\nbreak",
    "del\x7f",
    "x" * 1025,
    "é" * 513,  # 1026 UTF-8 bytes
    "\ud800",  # a lone surrogate cannot be encoded
    42,
    None,
    b"bytes",
]


@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: repr(k)[:20])
def test_invalid_keys_are_rejected_everywhere(object_store: ObjectStore, key: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        object_store.put(key, b"x")
    with pytest.raises(InvalidArgumentError):
        object_store.put(key, b"x", if_none_match=True)
    with pytest.raises(InvalidArgumentError):
        object_store.get(key)
    with pytest.raises(InvalidArgumentError):
        object_store.head(key)
    with pytest.raises(InvalidArgumentError):
        object_store.delete(key)
    assert list(object_store.list()) == []


@pytest.mark.parametrize(
    "key",
    ["a", "x" * 200, "spaces and ü ñ/€.log", "a-b_c.d~e+f=g,h;i@j", ".hidden/..dots", "a/..b"],
)
def test_unusual_valid_keys(object_store: ObjectStore, key: str) -> None:
    object_store.put(key, key.encode())

    assert object_store.get(key) == key.encode()
    assert [info.key for info in object_store.list()] == [key]


def test_check_passes_and_leaves_nothing_behind(object_store: ObjectStore) -> None:
    object_store.put("k", TEN)

    object_store.check()
    object_store.check(write=False)

    assert [info.key for info in object_store.list()] == ["k"]


def test_no_incomplete_uploads_in_a_fresh_store(object_store: ObjectStore) -> None:
    object_store.put("k", TEN)

    assert list(object_store.list_incomplete_uploads()) == []
    assert abort_stale_uploads(object_store, older_than_ms=0, now_ms=2**62) == []


def test_concurrent_puts_and_reads(object_store: ObjectStore) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(8):
                key = f"w{n}/{i:03d}"
                object_store.put(key, key.encode() * 10)
                assert object_store.get(key, start=0, end=len(key)) == key.encode()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(list(object_store.list())) == 48


def test_errors_are_logstore_errors(object_store: ObjectStore) -> None:
    for call in (
        lambda: object_store.get("missing"),
        lambda: object_store.get("", start=0),
        lambda: object_store.put("k", object()),  # type: ignore[arg-type]
    ):
        with pytest.raises(LogstoreError):
            call()


def test_context_manager_closes(object_store: ObjectStore) -> None:
    with object_store as entered:
        assert entered is object_store
        entered.put("k", TEN)
