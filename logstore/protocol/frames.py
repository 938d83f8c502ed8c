"""Kafka frames and the request and response headers.

Every request and response is a *frame*: a 4-byte big-endian size, then that many bytes.

Request frame (after the size)::

    offset  size  field
    0       2     request_api_key        int16
    2       2     request_api_version    int16
    4       4     correlation_id         int32
    8       2+n   client_id              NULLABLE_STRING (int16 length, -1 for null)
    ...           tagged fields          only in header v2 (flexible request versions):
                                         an unsigned varint count, then per field an
                                         unsigned varint tag, an unsigned varint size and
                                         the bytes
    ...           the request body       (see ``codec``)

Response frame: ``correlation_id`` (int32), then an empty tagged-field section (one zero byte)
in header v1 (flexible response versions, except ApiVersions, whose response header is always
v0 so that a client can read it whatever version it asked for), then the body.

Parsing is bounded by the frame: every length is checked against what is left, so hostile bytes
raise :class:`FrameError`, never read past the frame or allocate more than it holds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from logstore.errors import LogstoreError

SIZE = struct.Struct(">i")
_FIXED = struct.Struct(">hhi")  # api key, api version, correlation id
_INT16 = struct.Struct(">h")
_CORRELATION = struct.Struct(">i")
#: ``socket.request.max.bytes``: Kafka's default for the largest request frame.
DEFAULT_MAX_FRAME_BYTES = 100 * 1024 * 1024
#: A tagged-field section may not be longer than this many fields (hostile input).
_MAX_TAGGED_FIELDS = 1024


class FrameError(LogstoreError):
    """A frame, request header or request body that does not parse: the broker closes the
    connection (as Kafka does)."""

    error_code = 42  # INVALID_REQUEST


@dataclass(frozen=True, slots=True)
class RequestHeader:
    """The header of one request."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int
    """Where the body starts in the frame."""


def read_fixed(frame: bytes | memoryview) -> tuple[int, int, int]:
    """(api key, api version, correlation id): enough to answer even an unknown request."""
    if len(frame) < _FIXED.size:
        raise FrameError(f"a request frame of {len(frame)} bytes has no header")
    return _FIXED.unpack_from(frame, 0)


def parse_request_header(frame: bytes | memoryview, *, flexible: bool) -> RequestHeader:
    """Parse the header of a request frame (header v2 if ``flexible``, else v1)."""
    api_key, api_version, correlation_id = read_fixed(frame)
    offset = _FIXED.size
    if len(frame) < offset + 2:
        raise FrameError("the request header ends before its client id")
    (length,) = _INT16.unpack_from(frame, offset)
    offset += 2
    client_id: str | None = None
    if length >= 0:
        if offset + length > len(frame):
            raise FrameError("the client id runs past the end of the frame")
        try:
            client_id = bytes(frame[offset:offset + length]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError("the client id is not UTF-8") from exc
        offset += length
    elif length != -1:
        raise FrameError(f"invalid client id length {length}")
    if flexible:
        offset = skip_tagged_fields(frame, offset)
    return RequestHeader(api_key, api_version, correlation_id, client_id, offset)


def read_unsigned_varint(buf: bytes | memoryview, offset: int,
                         end: int | None = None) -> tuple[int, int]:
    """(value, next offset) of an unsigned varint of at most 5 bytes, read before ``end``
    (default: the end of ``buf``)."""
    limit = len(buf) if end is None else end
    value = shift = 0
    for index in range(5):
        if offset + index >= limit:
            raise FrameError("a varint runs past the end of the frame")
        byte = buf[offset + index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset + index + 1
        shift += 7
    raise FrameError("a varint is longer than 5 bytes")


def skip_tagged_fields(buf: bytes | memoryview, offset: int) -> int:
    """Skip a tagged-field section; return the offset after it."""
    count, offset = read_unsigned_varint(buf, offset)
    if count > _MAX_TAGGED_FIELDS:
        raise FrameError(f"{count} tagged fields")
    for _ in range(count):
        _, offset = read_unsigned_varint(buf, offset)
        size, offset = read_unsigned_varint(buf, offset)
        if offset + size > len(buf):
            raise FrameError("a tagged field runs past the end of the frame")
        offset += size
    return offset


def response_header(correlation_id: int, *, flexible: bool) -> bytes:
    """The bytes of a response header (v1 if ``flexible``: an empty tagged-field section)."""
    header = _CORRELATION.pack(correlation_id)
    return header + b"\x00" if flexible else header


def frame_size(payload_size: int) -> bytes:
    return SIZE.pack(payload_size)
