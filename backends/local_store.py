"""The local file system object store (``file:///abs/path``).

Layout: the object ``a/b/c`` is the file ``<root>/a/b/c``. The root directory must exist (it
plays the part of the bucket: a missing root is ObjectStoreAccessError, like NoSuchBucket).

Writes are atomic and durable: the data goes to a temporary file in the target's directory,
``.logstore-tmp.<32 hex>.<basename>``, which is fsynced and then renamed over the target (or,
for ``if_none_match``, hard-linked to it: ``link`` fails if the target exists, atomically even
between processes, where ``rename`` would replace it); then the directory is fsynced, and so is
the parent of every directory the put created. A crash leaves at most a temporary file: those
are the store's incomplete uploads (``initiated_ms`` is the file's mtime, which a running
upload keeps refreshing) and never appear in ``list``.

Limits of the file system, beyond the shared key rules: a key segment may not start with
``.logstore-tmp.``, a directory segment may have at most 255 bytes and the last one at most
207 (room for the temporary name), and ``a`` and ``a/b`` cannot both be objects (a file cannot
be a directory); such a put raises a non-retriable ObjectStoreError. Empty directories left by
deletes are not removed: a concurrent put into them would race with the removal.

Thread-safety: the store holds no mutable state; every call works on the file system alone, so
any number of threads and processes may share a root.
"""

from __future__ import annotations

import builtins
import errno
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn, Self

from logstore.backends.object_store import (
    IncompleteUpload,
    ObjectInfo,
    PutData,
    clamp_range,
    iter_chunks,
    open_put_source,
    read_up_to,
    validate_key,
    validate_prefix,
    validate_range,
)

from logstore.errors import (
    InvalidArgumentError,
    ObjectNotFoundError,
    ObjectStoreAccessError,
    ObjectStoreError,
    PreconditionFailedError,
)

TMP_PREFIX = ".logstore-tmp."
_TMP_OVERHEAD = len(TMP_PREFIX) + 32 + 1
_NAME_MAX = 255
_ACCESS_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_CONFLICT_ERRNOS = frozenset({errno.ENOTDIR, errno.EISDIR})


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size_bytes=st.st_size,
        etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
        last_modified_ms=st.st_mtime_ns // 1_000_000,
    )


class LocalObjectStore:
    """Objects as files under ``root``. See the module docstring for layout and guarantees."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_absolute():
            raise InvalidArgumentError(f"the local object store root must be absolute: {root}")
        self.url = f"file://{self.root}"
        self._fsync = fsync

    # --- the ObjectStore interface ----------------------------------------------------------

    def put(self, key: str, data: PutData, *, if_none_match: bool = False) -> ObjectInfo:
        path = self._path(key)
        with open_put_source(data) as stream:
            self._makedirs(path.parent, key)
            tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}.{path.name}")
            try:
                try:
                    with open(tmp, "xb") as out:
                        out.writelines(iter_chunks(stream))
                        out.flush()
                        if self._fsync:
                            os.fsync(out.fileno())
                        info = _info(key, os.fstat(out.fileno()))
                    if if_none_match:
                        self._link_new(tmp, path, key)
                    else:
                        os.replace(tmp, path)
                    self._sync_dir(path.parent)
                except OSError as exc:
                    self._raise(exc, "put", key)
            finally:
                # After a successful rename the temporary name is gone already.
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        return info

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        path = self._path(key)
        validate_range(start, end)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                lo, hi = clamp_range(key, size, start, end)
                if lo >= hi:
                    return b""
                f.seek(lo)
                return read_up_to(f, hi - lo)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._raise_not_found(key)
        except OSError as exc:
            self._raise(exc, "get", key)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root()
            return None
        except OSError as exc:
            self._raise(exc, "head", key)
        return _info(key, st) if stat.S_ISREG(st.st_mode) else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        found = [
            _info(key, st)
            for key, name, st in self._walk(prefix, "list")
            if not name.startswith(TMP_PREFIX) and key.startswith(prefix)
        ]
        found.sort(key=lambda info: info.key)
        return iter(found)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root()
            return
        except IsADirectoryError:
            return  # "a" while "a/b" exists: there is no object "a" to delete
        except OSError as exc:
            self._raise(exc, "delete", key)
        try:
            self._sync_dir(path.parent)
        except OSError as exc:
            self._raise(exc, "delete", key)

    def check(self, *, write: bool = True) -> None:
        self._check_root()
        try:
            os.listdir(self.root)
        except OSError as exc:
            self._raise(exc, "check", "")
        if write:
            probe = f"_logstore_check/{uuid.uuid4().hex}"
            self.put(probe, b"logstore check")
            try:
                self.get(probe)
            finally:
                self.delete(probe)

    def list_incomplete_uploads(self, prefix: str = "") -> Iterator[IncompleteUpload]:
        found = []
        for key, name, st in self._walk(prefix, "list_incomplete_uploads"):
            if not name.startswith(TMP_PREFIX):
                continue
            directory, _, _ = key.rpartition("/")
            target = name[_TMP_OVERHEAD:]
            target_key = f"{directory}/{target}" if directory else target
            if target_key.startswith(prefix):
                found.append(IncompleteUpload(target_key, key, st.st_mtime_ns // 1_000_000))
        found.sort(key=lambda u: (u.key, u.upload_id))
        return iter(found)

    def abort_upload(self, upload: IncompleteUpload) -> None:
        # The upload id is the temporary file's path under the root; refuse anything else so
        # that abort_upload can never delete an object.
        validate_key(upload.upload_id)
        if not upload.upload_id.rpartition("/")[2].startswith(TMP_PREFIX):
            raise InvalidArgumentError(f"not an upload id of this store: {upload.upload_id!r}")
        try:
            os.unlink(self.root.joinpath(*upload.upload_id.split("/")))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            self._raise(exc, "abort_upload", upload.key)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalObjectStore({self.url!r})"

    # --- internals --------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        segments = validate_key(key).split("/")
        for i, segment in enumerate(segments):
            if segment.startswith(TMP_PREFIX):
                raise InvalidArgumentError(f"object key {key!r}: {TMP_PREFIX!r} is reserved")
            limit = _NAME_MAX - _TMP_OVERHEAD if i == len(segments) - 1 else _NAME_MAX
            if len(segment.encode("utf-8")) > limit:
                raise InvalidArgumentError(
                    f"object key {key!r}: a segment is longer than this file store allows"
                )
        return self.root.joinpath(*segments)

    def _walk(self, prefix: str, op: str) -> Iterator[tuple[str, str, os.stat_result]]:
        """(key, file name, stat) of every regular file under the folder part of ``prefix``."""
        validate_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        stack: builtins.list[tuple[Path, str]] = [
            (self.root.joinpath(*folder.split("/")) if folder else self.root, folder)
        ]
        first = True
        while stack:
            directory, dir_key = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                if first:
                    self._check_root()
                entries = []
            except OSError as exc:
                self._raise(exc, op, prefix)
            first = False
            for entry in entries:
                key = f"{dir_key}/{entry.name}" if dir_key else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                            stack.append((Path(entry.path), key))
                    elif entry.is_file():
                        yield key, entry.name, entry.stat()
                except FileNotFoundError:
                    continue  # deleted while we looked: it is simply not listed

    def _makedirs(self, directory: Path, key: str) -> None:
        """Create ``directory`` and missing parents below the root, fsyncing each new entry."""
        self._check_root()
        missing: builtins.list[Path] = []
        while directory != self.root and not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new_dir in reversed(missing):
            try:
                os.mkdir(new_dir)
            except FileExistsError:
                if not new_dir.is_dir():
                    self._raise(OSError(errno.ENOTDIR, "not a directory", str(new_dir)), "put", key)
                continue  # another writer created it
            except OSError as exc:
                self._raise(exc, "put", key)
            try:
                self._sync_dir(new_dir.parent)
            except OSError as exc:
                self._raise(exc, "put", key)

    def _link_new(self, tmp: Path, path: Path, key: str) -> None:
        try:
            os.link(tmp, path)
        except FileExistsError:
            if path.is_dir():
                self._raise(OSError(errno.EISDIR, "is a directory", str(path)), "put", key)
            raise PreconditionFailedError(f"{self.url}: object {key!r} already exists") from None
        # Drop the temporary name before the directory is fsynced, so that both changes are
        # made durable together.
        os.unlink(tmp)

    def _sync_dir(self, directory: Path) -> None:
        if not self._fsync:
            return
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise ObjectStoreAccessError(
                f"{self.url}: the root directory does not exist (or is not a directory); "
                "create it first"
            )

    def _raise_not_found(self, key: str) -> NoReturn:
        self._check_root()
        raise ObjectNotFoundError(f"{self.url}: no object {key!r}")

    def _raise(self, exc: OSError, op: str, key: str) -> NoReturn:
        where = f"{self.url}: {op} {key!r}"
        if exc.errno in _ACCESS_ERRNOS:
            raise ObjectStoreAccessError(f"{where}: {exc.strerror}: {exc.filename}") from exc
        if exc.errno in _CONFLICT_ERRNOS:
            raise ObjectStoreError(
                f"{where}: the key clashes with an existing object or folder (a file store "
                "cannot hold both 'a' and 'a/b')",
                retriable=False,
            ) from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise InvalidArgumentError(f"{where}: a key segment is too long") from exc
        # ENOSPC, EIO and the like: the same call may work once the disk is fixed or freed.
        raise ObjectStoreError(f"{where}: {exc.strerror or exc}", retriable=True) from exc
