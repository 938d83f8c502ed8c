"""The local file system store's own guarantees: layout, atomic durable writes, temporary files
as incomplete uploads, file-system limits and errors, URL opening.
(The ObjectStore contract itself is in test_object_store_contract.py.)"""

from __future__ import annotations

import errno
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from logstore.backends.local_store import TMP_PREFIX, LocalObjectStore
from logstore.backends.object_store import abort_stale_uploads, open_object_store

from logstore.errors import (
    InvalidArgumentError,
    InvalidConfigurationError,
    ObjectStoreAccessError,
    ObjectStoreError,
    StorageError,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "objects"
    path.mkdir()
    return path


@pytest.fixture
def store(root: Path) -> LocalObjectStore:
    return LocalObjectStore(root)


def test_keys_are_paths_under_the_root(store: LocalObjectStore, root: Path) -> None:
    store.put("topics/t/0000000000/a.log", b"data")

    assert (root / "topics" / "t" / "0000000000" / "a.log").read_bytes() == b"data"
    assert sorted(p.name for p in root.rglob("*")) == ["0000000000", "a.log", "t", "topics"]


def test_put_fsyncs_the_file_and_every_directory_it_changes(
    store: LocalObjectStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)

    store.put("a/b/c.log", b"data")

    # The new directories' entries, the data (before it gets its name), the renamed entry.
    assert synced[:2] == [str(root), str(root / "a")]
    assert Path(synced[2]).name.startswith(TMP_PREFIX)
    assert synced[3:] == [str(root / "a" / "b")]


def test_no_fsync_option(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("fsync called"))

    LocalObjectStore(root, fsync=False).put("a/b", b"x")


def test_temporary_files_are_incomplete_uploads_never_objects(
    store: LocalObjectStore, root: Path
) -> None:
    store.put("topics/t/done.log", b"done")
    crashed = root / "topics" / "t" / f"{TMP_PREFIX}{'0' * 32}.half.log"
    crashed.write_bytes(b"half")
    os.utime(crashed, ns=(10**18, 10**18))  # 10**12 ms

    assert [info.key for info in store.list()] == ["topics/t/done.log"]
    uploads = list(store.list_incomplete_uploads("topics/"))
    assert [(u.key, u.initiated_ms) for u in uploads] == [("topics/t/half.log", 1_000_000_000_000)]
    assert list(store.list_incomplete_uploads("topics/t/d")) == []

    assert abort_stale_uploads(store, older_than_ms=1, now_ms=1_000_000_000_000) == []
    assert abort_stale_uploads(store, older_than_ms=1, now_ms=2_000_000_000_000) == uploads
    assert not crashed.exists()
    store.abort_upload(uploads[0])  # idempotent
    assert store.get("topics/t/done.log") == b"done"


def test_abort_upload_never_deletes_an_object(store: LocalObjectStore) -> None:
    from logstore.backends.object_store import IncompleteUpload

    store.put("a/obj", b"x")

    for upload_id in ["a/obj", "../a/obj", "/etc/passwd"]:
        with pytest.raises(InvalidArgumentError):
            store.abort_upload(IncompleteUpload("a/obj", upload_id, 0))
    assert store.get("a/obj") == b"x"


class _FailingReader(io.RawIOBase):
    """Yields some bytes, then fails like a disk error in the source file."""

    def __init__(self) -> None:
        self.calls = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.calls += 1
        if self.calls > 2:
            raise OSError(5, "Input/output error")
        buffer[:1000] = b"x" * 1000
        return 1000


def test_a_failed_put_leaves_neither_object_nor_temporary_file(
    store: LocalObjectStore, root: Path
) -> None:
    store.put("a/k", b"old")

    with pytest.raises(StorageError):
        store.put("a/k", _FailingReader())  # type: ignore[arg-type]

    assert store.get("a/k") == b"old"
    assert sorted(p.name for p in (root / "a").iterdir()) == ["k"]


def test_large_puts_are_copied_in_bounded_reads(store: LocalObjectStore) -> None:
    reads: list[int] = []

    class Recording(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(-1 if size is None else size)
            return super().read(size)

    store.put("big", Recording(b"z" * (5 * 1024 * 1024)))  # type: ignore[arg-type]

    assert max(reads) <= 1024 * 1024 and -1 not in reads
    assert store.head("big") is not None


def test_reserved_and_overlong_names(store: LocalObjectStore) -> None:
    for key in [f"{TMP_PREFIX}x", f"a/{TMP_PREFIX}x/b", "a/" + "n" * 250, "d" * 256 + "/x"]:
        with pytest.raises(InvalidArgumentError):
            store.put(key, b"x")
    store.put("d" * 255 + "/" + "n" * 207, b"ok")


def test_a_key_cannot_be_both_object_and_folder(store: LocalObjectStore) -> None:
    store.put("a/b", b"file")

    with pytest.raises(ObjectStoreError) as caught:
        store.put("a/b/c", b"x")
    assert not caught.value.retriable
    assert "clashes" in str(caught.value)

    store.put("x/y/z", b"deep")
    for if_none_match in (False, True):
        with pytest.raises(ObjectStoreError) as caught:
            store.put("x/y", b"x", if_none_match=if_none_match)
        assert not caught.value.retriable
    assert store.head("x/y") is None
    store.delete("x/y")
    assert store.get("x/y/z") == b"deep"


def test_a_missing_root_is_an_access_error(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "missing")

    for call in (
        lambda: store.put("k", b"v"),
        lambda: store.get("k"),
        lambda: store.head("k"),
        lambda: store.list(),
        lambda: store.delete("k"),
        lambda: store.check(write=False),
        lambda: store.list_incomplete_uploads(),
    ):
        with pytest.raises(ObjectStoreAccessError) as caught:
            call()
        assert not caught.value.retriable
        assert "does not exist" in str(caught.value)
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_root_is_an_access_error(store: LocalObjectStore, root: Path) -> None:
    root.chmod(0o500)
    try:
        with pytest.raises(ObjectStoreAccessError):
            store.put("k", b"v")
        with pytest.raises(ObjectStoreAccessError):
            store.check()
        store.check(write=False)
    finally:
        root.chmod(0o700)


@pytest.mark.parametrize(
    ("error", "expected", "retriable"),
    [
        (PermissionError(errno.EACCES, "Permission denied"), ObjectStoreAccessError, False),
        (OSError(errno.EROFS, "Read-only file system"), ObjectStoreAccessError, False),
        (OSError(errno.ENOSPC, "No space left on device"), ObjectStoreError, True),
        (OSError(errno.EIO, "Input/output error"), ObjectStoreError, True),
        (OSError(errno.ENAMETOOLONG, "File name too long"), InvalidArgumentError, False),
    ],
)
def test_os_errors_are_translated_and_clean_up(
    store: LocalObjectStore,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: OSError,
    expected: type[Exception],
    retriable: bool,
) -> None:
    store.put("a/k", b"old")

    def failing(*args: object) -> None:
        raise error

    monkeypatch.setattr(os, "replace", failing)
    monkeypatch.setattr(os, "link", failing)
    for if_none_match in (False, True):
        with pytest.raises(expected) as caught:
            store.put("a/k" if not if_none_match else "a/new", b"v", if_none_match=if_none_match)
        assert getattr(caught.value, "retriable", False) is retriable

    assert [p.name for p in (root / "a").iterdir()] == ["k"]
    assert store.get("a/k") == b"old"


def test_concurrent_if_none_match_from_many_threads(store: LocalObjectStore, root: Path) -> None:
    barrier = threading.Barrier(8)
    wins: list[int] = []

    def racer(n: int) -> None:
        barrier.wait()
        try:
            store.put("race/k", str(n).encode(), if_none_match=True)
            wins.append(n)
        except ObjectStoreError:
            pass

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(wins) == 1
    assert store.get("race/k") == str(wins[0]).encode()
    assert [p.name for p in (root / "race").iterdir()] == ["k"]


def test_relative_roots_are_refused() -> None:
    with pytest.raises(InvalidArgumentError):
        LocalObjectStore("relative/path")


def test_open_by_url(root: Path) -> None:
    store = open_object_store(f"file://{root}")
    assert isinstance(store, LocalObjectStore) and store.root == root
    assert isinstance(open_object_store(f"file://localhost{root}"), LocalObjectStore)
    spaced = root / "with space"
    spaced.mkdir()
    store = open_object_store(f"file://{str(spaced).replace(' ', '%20')}")
    assert isinstance(store, LocalObjectStore) and store.root == spaced


@pytest.mark.parametrize(
    "url", ["file://relative/path", "file://otherhost/tmp", "file:///tmp?fsync=0", "file:///x#y"]
)
def test_bad_file_urls(url: str) -> None:
    with pytest.raises(InvalidConfigurationError):
        open_object_store(url)
