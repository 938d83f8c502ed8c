"""Kafka's variable-length integers (protobuf base-128 varints of zigzag-encoded values).

Byte format::

    zigzag(n)  = (n << 1) ^ (n >> 63)        maps 0, -1, 1, -2, ... to 0, 1, 2, 3, ...
    varint     = 7 bits per byte, least significant group first; the high bit (0x80) of a
                 byte is set when another byte follows.

Kafka calls the 32-bit flavour "varint" (at most 5 bytes) and the 64-bit one "varlong" (at most
10 bytes); both share this encoding, so one codec handles both. Decoding accepts at most 10 bytes
and only values inside the signed 64-bit range, which is what Java's ``ByteUtils.readVarlong``
accepts. Record lengths, key/value lengths and counts are checked against the bytes actually
available by the caller (the record reader), which is stricter than any int32 range check.

Encoding of small non-negative values is a table lookup: lengths, offset deltas and timestamp
deltas of a batch are nearly always small, and a lookup is several times cheaper than the loop.
The tables are built once at import and are immutable, so every function is thread-safe.
"""

from __future__ import annotations

from logstore.errors import CorruptRecordError, InvalidArgumentError

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MAX_VARINT_BYTES = 10  # a zigzagged int64 needs at most ceil(64 / 7) bytes

# Values in [0, SMALL_LIMIT) and [-SMALL_LIMIT, 0) are encoded by lookup. 2**14 covers every
# 1- and 2-byte encoding of non-negative values plus 3-byte ones up to 16383: all realistic key
# and value lengths of small records, offset deltas of batches up to 16k records.
SMALL_LIMIT = 1 << 14


def _encode_slow(n: int) -> bytes:
    """Encode ``n`` (already range-checked) with the generic loop."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


POSITIVE_VARINTS: tuple[bytes, ...] = tuple(_encode_slow(n) for n in range(SMALL_LIMIT))
"""``POSITIVE_VARINTS[n]`` is the encoding of ``n`` for ``0 <= n < SMALL_LIMIT``."""

NEGATIVE_VARINTS: tuple[bytes, ...] = tuple(_encode_slow(~n) for n in range(SMALL_LIMIT))
"""``NEGATIVE_VARINTS[~n]`` (i.e. index ``-n - 1``) is the encoding of ``n`` for negative ``n``."""

ZIGZAG_1BYTE: tuple[int, ...] = tuple((b >> 1) ^ -(b & 1) for b in range(0x80))
"""``ZIGZAG_1BYTE[b]`` is the value of the one-byte varint ``b`` (``b < 0x80``)."""

ZIGZAG_2BYTE: tuple[int, ...] = tuple(
    ((i - 0x80) >> 1) ^ -((i - 0x80) & 1) if i >= 0x80 else 0 for i in range(0x80 + (0x80 << 7))
)
"""``ZIGZAG_2BYTE[b0 + (b1 << 7)]`` is the value of the two-byte varint ``b0 b1``
(``b0 >= 0x80 > b1``): that index is ``0x80`` more than the 14-bit payload, so no masking is
needed on the hot path. Entries below 0x80 are unused."""


def encode_varint(n: int) -> bytes:
    """Return the zigzag varint encoding of the signed 64-bit integer ``n``.

    Raises :class:`InvalidArgumentError` if ``n`` is not an int or lies outside int64.
    """
    if type(n) is int:
        if 0 <= n < SMALL_LIMIT:
            return POSITIVE_VARINTS[n]
        if -SMALL_LIMIT <= n < 0:
            return NEGATIVE_VARINTS[~n]
        if INT64_MIN <= n <= INT64_MAX:
            return _encode_slow(n)
        raise InvalidArgumentError(f"varint value {n} is outside the int64 range")
    if isinstance(n, int) and not isinstance(n, bool):
        return encode_varint(int(n))
    raise InvalidArgumentError(f"varint value must be an int, not {type(n).__name__}")


def size_of_varint(n: int) -> int:
    """Number of bytes :func:`encode_varint` produces for ``n`` (1..10)."""
    z = (n << 1) ^ (n >> 63)
    return (z.bit_length() + 6) // 7 or 1


def decode_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Decode the varint starting at ``buf[pos]``; return ``(value, position after it)``.

    Raises :class:`CorruptRecordError` when the varint is truncated, longer than 10 bytes or
    encodes a value outside int64.
    """
    end = len(buf)
    if pos < 0 or pos >= end:
        raise CorruptRecordError(f"truncated varint at position {pos}")
    b = buf[pos]
    if b < 0x80:
        return ZIGZAG_1BYTE[b], pos + 1
    start = pos
    raw = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end:
            raise CorruptRecordError(f"truncated varint at position {start}")
        if shift >= 7 * MAX_VARINT_BYTES:
            raise CorruptRecordError(f"varint at position {start} is longer than 10 bytes")
        b = buf[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    if raw >> 64:
        raise CorruptRecordError(f"varint at position {start} is outside the int64 range")
    return (raw >> 1) ^ -(raw & 1), pos
