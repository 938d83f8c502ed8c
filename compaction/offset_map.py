"""The log cleaner's fixed-memory key -> offset map (Kafka's ``SkimpyOffsetMap``).

The cleaner scans the dirty section of a log and remembers, for every key, the offset of its
latest record; records of the cleaned section whose offset is below their key's entry are then
dropped. The map never grows: it is one table allocated up front from a memory budget
(Kafka's ``log.cleaner.dedupe.buffer.size``), and when it is full the caller stops the scan at
a batch boundary and cleans up to there.

Table layout: ``memory_bytes // 24`` slots of 24 bytes each, zero-filled at creation::

    bytes  0..15  keyed 128-bit digest of the key (all zeros = empty slot)
    bytes 16..23  offset of the key's latest record, int64

- The digest is SipHash-2-4 with 128-bit output in C, and BLAKE2b (``digest_size=16``) in
  Python, both keyed with the map's 16-byte ``secret``. The secret is random per map by default,
  so keys chosen by an adversary cannot be made to collide or to cluster in the table. The
  C table stores the digest as two host-order 64-bit words and the offset in host order; the
  Python table stores the digest bytes as they come and the offset little-endian. Tables are
  never persisted nor shared, so the two need not agree, and they do not.
- A key goes to slot ``int.from_bytes(digest[:8], "little") % slots`` and, when taken by
  another digest, to the next slot (linear probing, wrapping at the end).
- A real digest of all zeros (probability 2**-128) is stored with its lowest bit set, since all
  zeros marks an empty slot.
- Like Kafka's map, only digests are stored: two distinct keys with the same 128-bit digest are
  treated as one key. The probability is negligible (about n**2 / 2**129 for n keys: below
  10**-20 for a billion keys); the cost of one would be the cleaner dropping the latest
  record of one of the two keys.
- At most ``capacity = slots * 9 // 10`` keys are stored (the dedupe buffer's load factor of
  0.9), so a probe always ends at an empty slot. Both implementations use the same formula:
  given the same ``memory_bytes`` they accept and refuse exactly the same puts.

Use :func:`new_offset_map`; it picks the C implementation (``_offset_map.c``) when it was
built, unless ``LOGSTORE_PURE_PYTHON`` is set (the switch of ``logstore.records.speedups``).
"""

from __future__ import annotations

import hashlib
import importlib
import operator
import os
import struct
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Protocol, TypeAlias, runtime_checkable

from logstore.errors import InvalidArgumentError

Key: TypeAlias = bytes | bytearray | memoryview
"""A record key: any C-contiguous bytes-like object (bytes, bytearray, memoryview)."""

SLOT_BYTES = 24
"""Bytes per slot: a 16-byte digest and an int64 offset."""

DIGEST_BYTES = 16
SECRET_BYTES = 16
MIN_SLOTS = 16
MIN_MEMORY_BYTES = MIN_SLOTS * SLOT_BYTES
"""The smallest accepted ``memory_bytes`` (16 slots, 14 keys)."""

MAX_MEMORY_BYTES = 2**40
"""The largest accepted ``memory_bytes`` (1 TiB): anything above is a mistake."""

MAX_OFFSET = 2**63 - 1
LOAD_FACTOR_NUMERATOR, LOAD_FACTOR_DENOMINATOR = 9, 10


@runtime_checkable
class OffsetMap(Protocol):
    """A fixed-capacity map from record keys (bytes-like, any length) to offsets.

    Keys are accepted as anything with the buffer protocol (bytes, bytearray, memoryview);
    anything else raises TypeError. Offsets must be ints in ``0..2**63-1``; a negative or too
    large one raises :class:`InvalidArgumentError` (a ValueError), a non-int TypeError.
    """

    def put(self, key: Key, offset: int) -> bool:
        """Map ``key`` to ``offset``, overwriting any previous offset (the cleaner feeds
        offsets in increasing order, so the last put is the latest). Returns False, changing
        nothing, when the map is full (``remaining == 0``) and ``key`` is not in it; a key
        already in a full map is still overwritten."""
        ...

    def get(self, key: Key) -> int:
        """The offset last put for ``key``, or -1 when it is absent."""
        ...

    def put_many(self, keys: Sequence[Key], offsets: Sequence[int]) -> int:
        """``put(keys[i], offsets[i])`` for i = 0, 1, ... in order, stopping at the first
        pair that does not fit; returns how many pairs were applied (``n``). Then exactly
        ``keys[:n]`` were put and nothing after: ``n == len(keys)`` means all fitted, and
        otherwise ``keys[n]`` is absent from the (now full) map, so the caller can stop its
        scan before the batch holding ``offsets[n]``. Sequences of different lengths raise
        InvalidArgumentError before anything is put. A bad pair (wrong type, offset out of
        range) raises its error with the pairs before it applied and none after."""
        ...

    def get_many(self, keys: Iterable[Key]) -> list[int]:
        """``[get(key) for key in keys]``."""
        ...

    def __len__(self) -> int:
        """The number of distinct keys in the map."""
        ...

    @property
    def capacity(self) -> int:
        """How many keys fit: ``(memory_bytes // 24) * 9 // 10``."""
        ...

    @property
    def remaining(self) -> int:
        """``capacity - len(self)``: how many more distinct keys fit."""
        ...

    @property
    def memory_bytes(self) -> int:
        """Bytes of the slot table: ``memory_bytes // 24 * 24`` of the requested budget."""
        ...

    @property
    def latest_offset(self) -> int:
        """The largest offset put (since creation or :meth:`clear`), -1 if none."""
        ...

    def clear(self) -> None:
        """Remove every key; the memory stays allocated for reuse."""
        ...


def _slot_count(memory_bytes: object) -> int:
    if (
        not isinstance(memory_bytes, int)
        or isinstance(memory_bytes, bool)
        or not MIN_MEMORY_BYTES <= memory_bytes <= MAX_MEMORY_BYTES
    ):
        raise InvalidArgumentError(
            f"memory_bytes must be an int in {MIN_MEMORY_BYTES}..{MAX_MEMORY_BYTES}, "
            f"not {memory_bytes!r}"
        )
    return memory_bytes // SLOT_BYTES


def _check_secret(secret: object) -> bytes:
    try:
        data = bytes(memoryview(secret))  # type: ignore[arg-type]
    except TypeError:
        raise InvalidArgumentError(f"secret must be bytes, not {type(secret).__name__}") from None
    if len(data) != SECRET_BYTES:
        raise InvalidArgumentError(f"secret must be {SECRET_BYTES} bytes, not {len(data)}")
    return data


_EMPTY = bytes(DIGEST_BYTES)
_NONZERO = b"\x01" + bytes(DIGEST_BYTES - 1)  # what an all-zero digest is stored as
_OFFSET = struct.Struct("<q")


class PyOffsetMap:
    """The pure-Python :class:`OffsetMap`: BLAKE2b digests in a ``bytearray`` table."""

    __slots__ = ("_capacity", "_hasher", "_latest", "_size", "_slots", "_table")

    def __init__(self, memory_bytes: int, secret: bytes) -> None:
        self._slots = _slot_count(memory_bytes)
        self._hasher = hashlib.blake2b(digest_size=DIGEST_BYTES, key=_check_secret(secret))
        self._capacity = self._slots * LOAD_FACTOR_NUMERATOR // LOAD_FACTOR_DENOMINATOR
        self._table = bytearray(self._slots * SLOT_BYTES)
        self._size = 0
        self._latest = -1

    def _digest(self, key: Key) -> bytes:
        hasher = self._hasher.copy()
        hasher.update(key)
        digest = hasher.digest()
        return digest if digest != _EMPTY else _NONZERO

    def _find(self, digest: bytes) -> int:
        """The byte position of the slot holding ``digest``, or ``~position`` of the empty
        slot where it would go."""
        table = self._table
        end = self._slots * SLOT_BYTES
        pos = int.from_bytes(digest[:8], "little") % self._slots * SLOT_BYTES
        while True:
            if table.startswith(digest, pos):
                return pos
            if table.startswith(_EMPTY, pos):
                return ~pos
            pos += SLOT_BYTES
            if pos == end:
                pos = 0

    def put(self, key: Key, offset: int) -> bool:
        offset = operator.index(offset)
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidArgumentError("an offset must be in 0..2**63-1")
        digest = self._digest(key)
        pos = self._find(digest)
        if pos < 0:
            if self._size >= self._capacity:
                return False
            pos = ~pos
            self._table[pos : pos + DIGEST_BYTES] = digest
            self._size += 1
        _OFFSET.pack_into(self._table, pos + DIGEST_BYTES, offset)
        self._latest = max(self._latest, offset)
        return True

    def get(self, key: Key) -> int:
        pos = self._find(self._digest(key))
        return -1 if pos < 0 else _OFFSET.unpack_from(self._table, pos + DIGEST_BYTES)[0]

    def put_many(self, keys: Sequence[Key], offsets: Sequence[int]) -> int:
        if len(keys) != len(offsets):
            raise InvalidArgumentError(f"{len(keys)} keys but {len(offsets)} offsets")
        applied = 0
        put = self.put
        for key, offset in zip(keys, offsets, strict=True):
            if not put(key, offset):
                break
            applied += 1
        return applied

    def get_many(self, keys: Iterable[Key]) -> list[int]:
        get = self.get
        return [get(key) for key in keys]

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def remaining(self) -> int:
        return self._capacity - self._size

    @property
    def memory_bytes(self) -> int:
        return len(self._table)

    @property
    def latest_offset(self) -> int:
        return self._latest

    def clear(self) -> None:
        # In place and in bounded chunks: no second table-sized allocation.
        view = memoryview(self._table)
        zeros = memoryview(bytes(min(len(view), 1 << 20)))
        for start in range(0, len(view), len(zeros)):
            stop = min(start + len(zeros), len(view))
            view[start:stop] = zeros[: stop - start]
        self._size = 0
        self._latest = -1


def _load() -> ModuleType | None:
    if os.environ.get("LOGSTORE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("logstore.compaction._offset_map")
    except ImportError:
        return None


_module = _load()

COffsetMap: type[OffsetMap] | None = _module.COffsetMap if _module is not None else None
"""The C :class:`OffsetMap` (``COffsetMap(memory_bytes, secret)``), or None when not built."""


def accelerated() -> bool:
    """True when :func:`new_offset_map` returns the C implementation."""
    return COffsetMap is not None


def new_offset_map(memory_bytes: int, *, secret: bytes | None = None) -> OffsetMap:
    """A new, empty :class:`OffsetMap` whose table takes ``memory_bytes // 24 * 24`` bytes.

    ``memory_bytes`` must be an int in ``MIN_MEMORY_BYTES..MAX_MEMORY_BYTES`` (384 B..1 TiB),
    else :class:`InvalidArgumentError`. ``secret`` is the 16-byte key of the digest; by default
    a random one (``os.urandom``), which is what callers should use: a fixed secret only helps
    tests that need reproducible placement. A secret of another length or type raises
    :class:`InvalidArgumentError`.
    """
    _slot_count(memory_bytes)
    secret = os.urandom(SECRET_BYTES) if secret is None else _check_secret(secret)
    if COffsetMap is not None:
        return COffsetMap(memory_bytes, secret)  # type: ignore[call-arg]
    return PyOffsetMap(memory_bytes, secret)
