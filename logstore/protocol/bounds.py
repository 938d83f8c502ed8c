"""A bounds check of request bodies before kio reads them.

kio's native reader sizes an array's storage from the count the frame declares, before reading
any element: a Metadata v1 request of twelve bytes declaring 2^31 - 1 topics makes it ask for
16 GiB, and a flexible request's varint count can ask for 256 GiB. When the allocation fails
the process aborts (Rust's out-of-memory handler), taking the broker and every connection with
it; when it succeeds it reserves memory no frame justifies. So every body is walked first, as
its version's schema lays it out (kio's entity classes), checking that each array's count fits in
the bytes left (every element takes at least one byte) and that every length stays inside the
frame; a body that fails raises :class:`~logstore.protocol.frames.FrameError` without kio
seeing it. A request may also declare at most ``MAX_ARRAY_ELEMENTS`` array elements in all (a
million: more partitions than any client puts in one request), which bounds both this walk and
the objects kio would make of a frame full of tiny elements.

The walk only skips: strings, bytes and record batches are stepped over by their lengths, never
decoded or copied, and fixed-size elements of an array are skipped in one step. Walkers are
built once per (API key, version) and cached. It is as lenient as kio where kio decides (a null
where a value is required, an unknown tagged field); it rejects only what kio would also reject
or what would make it allocate beyond the frame.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from logstore.protocol.frames import FrameError, read_unsigned_varint

#: ``walk(buffer, offset, end, budget) -> offset after the value``; raises FrameError.
#: ``budget`` is a one-element list: the array elements the request may still declare.
Walker = Callable[[Any, int, int, list[int]], int]

#: The most array elements one request may declare, all arrays together.
MAX_ARRAY_ELEMENTS = 1_000_000

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_FIXED_SIZES = {
    "bool": 1, "int8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
    "float64": 8, "uuid": 16, "timedelta_i32": 4, "timedelta_i64": 8, "datetime_i64": 8,
}
_VARIABLE = ("string", "bytes", "records")


def check_bounds(request_class: type[Any], frame: Any, offset: int) -> None:
    """Walk the body of a ``request_class`` request starting at ``offset`` of ``frame`` (see the
    module docstring); FrameError if it does not fit. Bytes after the body are not looked at."""
    body_walker(request_class)(frame, offset, len(frame), [MAX_ARRAY_ELEMENTS])


@cache
def body_walker(request_class: type[Any]) -> Walker:
    """The walker of a kio request (or response) class, built once."""
    return _entity(request_class)[0]


def _past_end() -> FrameError:
    return FrameError("the request body runs past the end of the frame")


def _skip(size: int) -> Walker:
    def walk(buf: Any, offset: int, end: int, budget: list[int]) -> int:
        offset += size
        if offset > end:
            raise _past_end()
        return offset

    return walk


def _variable(flexible: bool, int16_length: bool) -> Walker:
    """A string (int16 length) or bytes/records (int32 length); compact: a varint length + 1.
    A negative (null) length is left to kio."""
    if flexible:
        def walk_compact(buf: Any, offset: int, end: int, budget: list[int]) -> int:
            length, offset = read_unsigned_varint(buf, offset, end)
            offset += max(length - 1, 0)
            if offset > end:
                raise _past_end()
            return offset

        return walk_compact
    head = _INT16 if int16_length else _INT32

    def walk(buf: Any, offset: int, end: int, budget: list[int]) -> int:
        if offset + head.size > end:
            raise _past_end()
        (length,) = head.unpack_from(buf, offset)
        offset += head.size + max(length, 0)
        if offset > end:
            raise _past_end()
        return offset

    return walk


def _array(element: Walker, element_size: int | None, flexible: bool) -> Walker:
    """An array (int32 count; compact: a varint count + 1) of ``element``s, each of
    ``element_size`` bytes when that is fixed (skipped in one step)."""
    def walk(buf: Any, offset: int, end: int, budget: list[int]) -> int:
        if flexible:
            count, offset = read_unsigned_varint(buf, offset, end)
            count -= 1
        else:
            if offset + 4 > end:
                raise _past_end()
            (count,) = _INT32.unpack_from(buf, offset)
            offset += 4
        if count <= 0:
            return offset  # empty, or null (kio decides whether null is allowed)
        if count > end - offset:
            raise FrameError(f"an array of {count} elements in {end - offset} bytes")
        budget[0] -= count
        if budget[0] < 0:
            raise FrameError(f"a request of more than {MAX_ARRAY_ELEMENTS} array elements")
        if element_size is not None:
            offset += count * element_size
            if offset > end:
                raise _past_end()
            return offset
        for _ in range(count):
            offset = element(buf, offset, end, budget)
        return offset

    return walk


def _field(field: dataclasses.Field[Any], flexible: bool) -> tuple[Walker, int | None]:
    """(walker, fixed size or None) of one field of an entity (compact if ``flexible``)."""
    field_type = _strip_optional(field.type)
    is_array = typing.get_origin(field_type) is tuple
    inner = _strip_optional(typing.get_args(field_type)[0]) if is_array else field_type
    if dataclasses.is_dataclass(inner):
        element, size = _entity(inner)  # type: ignore[arg-type]
        if not is_array and field_type is not field.type and field.metadata.get("tag") is None:
            element, size = _nullable_entity(element), None
    else:
        kafka_type = field.metadata.get("kafka_type")
        if kafka_type in _FIXED_SIZES:
            size = _FIXED_SIZES[kafka_type]
            element = _skip(size)
        elif kafka_type in _VARIABLE:
            element, size = _variable(flexible, kafka_type == "string"), None
        else:
            raise TypeError(f"no bounds walker for field {field.name} of kafka type "
                            f"{kafka_type!r}")
    if is_array:
        return _array(element, size, flexible), None
    return element, size


def _nullable_entity(entity: Walker) -> Walker:
    """A nullable struct (KIP-893): an int8 marker, -1 for null, then the struct."""
    def walk(buf: Any, offset: int, end: int, budget: list[int]) -> int:
        if offset >= end:
            raise _past_end()
        if buf[offset] == 0xFF:
            return offset + 1
        return entity(buf, offset + 1, end, budget)

    return walk


def _strip_optional(field_type: Any) -> Any:
    if typing.get_origin(field_type) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(field_type) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return field_type


@cache
def _entity(cls: type[Any]) -> tuple[Walker, int | None]:
    """(walker, fixed size or None) of an entity: its fields in order (runs of fixed-size
    fields skipped in one step), then, if flexible, its tagged fields."""
    flexible = bool(cls.__flexible__)
    steps: list[Walker | int] = []
    tagged: dict[int, Walker] = {}
    for field in dataclasses.fields(cls):
        walker, size = _field(field, flexible)
        tag = field.metadata.get("tag")
        if tag is not None:
            tagged[int(tag)] = walker
        elif size is not None and steps and isinstance(steps[-1], int):
            steps[-1] += size
        else:
            steps.append(size if size is not None else walker)
    if not flexible and all(isinstance(step, int) for step in steps):
        size = sum(steps)  # type: ignore[arg-type]
        return _skip(size), size
    plan = tuple(steps)

    def walk(buf: Any, offset: int, end: int, budget: list[int]) -> int:
        for step in plan:
            if isinstance(step, int):
                offset += step
                if offset > end:
                    raise _past_end()
            else:
                offset = step(buf, offset, end, budget)
        if flexible:
            offset = _tagged_fields(buf, offset, end, budget, tagged)
        return offset

    return walk, None


def _tagged_fields(buf: Any, offset: int, end: int, budget: list[int],
                   known: dict[int, Walker]) -> int:
    count, offset = read_unsigned_varint(buf, offset, end)
    if count > end - offset:
        raise FrameError(f"{count} tagged fields in {end - offset} bytes")
    for _ in range(count):
        tag, offset = read_unsigned_varint(buf, offset, end)
        size, offset = read_unsigned_varint(buf, offset, end)
        stop = offset + size
        if stop > end:
            raise FrameError("a tagged field runs past the end of the frame")
        walker = known.get(tag)
        # kio reads a known tag's value where it starts and goes on where the value ends,
        # whatever its declared size: the value must fill its size exactly, so that what kio
        # reads is what was checked.
        if walker is not None and _walk_within(walker, buf, offset, stop, budget) != stop:
            raise FrameError(f"tagged field {tag} does not fill its size of {size} bytes")
        offset = stop
    return offset


def _walk_within(walker: Walker, buf: Any, offset: int, stop: int, budget: list[int]) -> int:
    try:
        return walker(buf, offset, stop, budget)
    except FrameError as exc:
        raise FrameError(f"a tagged field does not fit its size: {exc}") from exc
