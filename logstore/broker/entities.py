"""Building kio response entities for any version from one set of values.

Each version of a Kafka message is its own kio dataclass, with its own fields. A handler writes
its response once, as values for every field any version has, and :func:`build` keeps those the
requested version's class has (and converts error codes and durations to kio's types), so the
handler never branches on versions for fields that only appear or disappear.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
from functools import cache
from types import ModuleType
from typing import Any

from kio.schema.errors import ErrorCode

from logstore.protocol.codec import response_type


@cache
def response_module(api_key: int, api_version: int) -> ModuleType:
    """The kio module holding a response version's classes (nested entities included)."""
    return importlib.import_module(response_type(api_key, api_version).__module__)


@cache
def _fields(cls: type[Any]) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(cls)}


def build(cls: type[Any], /, **values: Any) -> Any:
    """An instance of ``cls`` from the ``values`` it has fields for (others are ignored).
    ``error_code`` ints become :class:`ErrorCode`; ``*_ms`` values fill timedelta fields of the
    same name without the suffix (``throttle_time_ms`` -> ``throttle_time``)."""
    fields = _fields(cls)
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name.endswith("_ms") and name not in fields and name[:-3] in fields:
            kwargs[name[:-3]] = datetime.timedelta(milliseconds=value)
        elif name in fields:
            kwargs[name] = ErrorCode(value) if name == "error_code" else value
    return cls(**kwargs)


def build_in(module: ModuleType, class_name: str, /, **values: Any) -> Any:
    """:func:`build` of the class ``class_name`` of a version's module."""
    return build(getattr(module, class_name), **values)


def has_field(cls: type[Any], name: str) -> bool:
    return name in _fields(cls)
