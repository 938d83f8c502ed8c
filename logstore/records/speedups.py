"""The optional C accelerator of the per-record hot paths, and the switch between it and the
pure-Python reference implementations.

``logstore.records._speedups`` is built from ``_speedups.c`` when a C compiler is available at
install time (it is an optional extension: without a compiler the pure-Python code is used and
everything works, only slower). Setting the environment variable ``LOGSTORE_PURE_PYTHON=1``
before importing logstore forces the Python implementations, e.g. to compare the two.

The Python functions stay the reference: the C ones must return identical results and raise the
same exception classes for every input, which ``tests/records/test_speedups.py`` checks on
random, mutated and hostile bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

from logstore.errors import CorruptRecordError, InvalidArgumentError
from logstore.types import ConsumerRecord


def _load() -> ModuleType | None:
    if os.environ.get("LOGSTORE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from logstore.records import _speedups
    except ImportError:
        return None
    _speedups.setup(CorruptRecordError, InvalidArgumentError, ConsumerRecord)
    return _speedups


_module = _load()

decode_records: Callable[..., list[ConsumerRecord]] | None = (
    _module.decode_records if _module is not None else None
)
"""C ``decode_records`` (see ``_speedups.c``), or None when not built."""

encode_record: Callable[..., bytes] | None = _module.encode_record if _module is not None else None
"""C ``encode_record(offset_delta, timestamp_delta, key, value, headers)``, or None."""

encode_records: Callable[..., tuple[bytes, int]] | None = (
    _module.encode_records if _module is not None else None
)
"""C ``encode_records(records, base_timestamp) -> (records section, max timestamp)``, or None."""

check_records: Callable[..., tuple[int, int]] | None = (
    _module.check_records if _module is not None else None
)
"""C ``check_records(data, pos, end, count, last_offset_delta)`` (see ``_speedups.c``), or
None."""

murmur2: Callable[[Any], int] | None = _module.murmur2 if _module is not None else None
"""C ``murmur2(data)``, or None."""


def accelerated() -> bool:
    """True when the C accelerator is in use."""
    return _module is not None
