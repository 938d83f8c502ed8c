"""Topic configuration: the known keys, their defaults and validation.

Topic configs use Kafka's dotted names and are stored as strings (as Kafka does), overriding the
defaults below. :func:`validate_overrides` checks keys and values and returns them normalized;
:class:`TopicConfig` is the parsed, typed view used by the storage engine.

Only keys that the code honours are accepted: an unknown key is an error rather than a silently
ignored setting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from logstore.errors import InvalidConfigurationError

_LONG_MAX = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One topic config key: its default (as a string), parser and documentation."""

    name: str
    default: str
    parse: Callable[[str], object]
    doc: str
    list_valued: bool = False
    """A comma-separated list (Kafka's LIST type: items can be appended and subtracted)."""


def _long(minimum: int, maximum: int = _LONG_MAX) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {value}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {text!r}")
        return value

    return parse


def _cleanup_policy(text: str) -> str:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or len(set(parts)) != len(parts) or not set(parts) <= {"delete", "compact"}:
        raise ValueError(
            f"must be 'delete', 'compact' or 'compact,delete'; got {text!r}"
        )
    return ",".join(sorted(parts))


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"must be true or false; got {text!r}")
    return value == "true"


def _ratio(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value}")
    return value


TOPIC_CONFIG_KEYS: dict[str, ConfigKey] = {
    key.name: key
    for key in (
        ConfigKey(
            "cleanup.policy",
            "delete",
            _cleanup_policy,
            "What to do with old segments: 'delete' drops them by retention.ms / "
            "retention.bytes; 'compact' keeps at least the latest record of every key (the log "
            "cleaner, `logstore compact`); 'compact,delete' does both.",
            list_valued=True,
        ),
        ConfigKey(
            "min.cleanable.dirty.ratio",
            "0.5",
            _ratio,
            "Compact a partition once its dirty (not yet cleaned) bytes are at least this share "
            "of its cleanable bytes.",
        ),
        ConfigKey(
            "min.compaction.lag.ms",
            "0",
            _long(0),
            "Never compact a record younger than this (by the timestamps of its segment).",
        ),
        ConfigKey(
            "max.compaction.lag.ms",
            str(_LONG_MAX),
            _long(1),
            "Compact a partition, whatever its dirty ratio, once a dirty record is this old; "
            "also rolls the active segment of a compacted topic at this age.",
        ),
        ConfigKey(
            "delete.retention.ms",
            "86400000",
            _long(0),
            "How long tombstones (and transaction markers) stay readable after the cleaner "
            "first cleaned their batch, so slow consumers still see the deletion.",
        ),
        ConfigKey(
            "retention.ms",
            "604800000",
            _long(-1),
            "Drop a sealed segment once its newest record is older than this; -1 keeps forever.",
        ),
        ConfigKey(
            "retention.bytes",
            "-1",
            _long(-1),
            "Drop the oldest sealed segments while a partition is larger than this; -1: no limit.",
        ),
        ConfigKey(
            "remote.storage.enable",
            "false",
            _bool,
            "Tier sealed segments to the object store (KIP-405): local copies are then kept "
            "only for local.retention.ms / local.retention.bytes, and reads of older offsets "
            "are served from the object store. Needs a log opened with an object store.",
        ),
        ConfigKey(
            "local.retention.ms",
            "-2",
            _long(-2),
            "With remote storage: drop the local copy of a tiered segment once its newest "
            "record is older than this; -2 uses retention.ms, -1 keeps local copies forever.",
        ),
        ConfigKey(
            "local.retention.bytes",
            "-2",
            _long(-2),
            "With remote storage: drop local copies of tiered segments, oldest first, while the "
            "local log is larger than this; -2 uses retention.bytes, -1: no limit.",
        ),
        ConfigKey(
            "segment.bytes",
            "1073741824",
            _long(14, (1 << 31) - 1),
            "Roll the active segment when it would grow past this many bytes.",
        ),
        ConfigKey(
            "segment.ms",
            "604800000",
            _long(1),
            "Roll the active segment on the next append once it is this old.",
        ),
        ConfigKey(
            "max.message.bytes",
            "1048588",
            _long(0, (1 << 31) - 1),
            "The largest record batch (after compression) a partition accepts.",
        ),
        ConfigKey(
            "message.timestamp.type",
            "CreateTime",
            _choice("CreateTime", "LogAppendTime"),
            "CreateTime keeps the producer's timestamps; LogAppendTime stamps the append time.",
        ),
        ConfigKey(
            "durability",
            "fsync",
            _choice("fsync", "os"),
            "fsync: an acknowledged write survives power loss (SQLite synchronous=FULL); "
            "os: it survives a process crash (synchronous=NORMAL).",
        ),
    )
}


def validate_overrides(overrides: Mapping[str, object]) -> dict[str, str]:
    """Check topic config overrides and return them normalized as strings.

    Raises :class:`InvalidConfigurationError` naming the first bad key.
    """
    result: dict[str, str] = {}
    for name, raw in overrides.items():
        key = TOPIC_CONFIG_KEYS.get(name)
        if key is None:
            known = ", ".join(sorted(TOPIC_CONFIG_KEYS))
            raise InvalidConfigurationError(f"unknown topic config {name!r} (known: {known})")
        text = str(raw).strip() if not isinstance(raw, bool) else str(raw).lower()
        try:
            key.parse(text)
        except ValueError as exc:
            raise InvalidConfigurationError(f"invalid value for {name}: {exc}") from None
        result[name] = text
    return result


def check_combination(overrides: Mapping[str, str]) -> None:
    """Refuse validated overrides whose keys contradict each other: remote storage with log
    compaction (Kafka refuses it too, KIP-405: the cleaner only works on local segments, so
    remote copies would keep every old version of every key forever)."""
    config = TopicConfig.from_overrides(overrides)
    if config.remote_storage_enable and config.compacts:
        raise InvalidConfigurationError(
            "remote.storage.enable=true cannot be combined with cleanup.policy="
            f"{config.cleanup_policy}: compacted topics are not tiered (as in Kafka)")


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """The effective, typed configuration of a topic (defaults merged with overrides)."""

    cleanup_policy: str
    retention_ms: int
    retention_bytes: int
    segment_bytes: int
    segment_ms: int
    max_message_bytes: int
    log_append_time: bool
    fsync: bool
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = _LONG_MAX
    delete_retention_ms: int = 86_400_000
    remote_storage_enable: bool = False
    local_retention_ms: int = -2
    local_retention_bytes: int = -2

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, str]) -> TopicConfig:
        """Build the effective config; ``overrides`` must already be validated."""
        values = {name: key.parse(overrides.get(name, key.default))
                  for name, key in TOPIC_CONFIG_KEYS.items()}
        return cls(
            cleanup_policy=str(values["cleanup.policy"]),
            retention_ms=int(values["retention.ms"]),  # type: ignore[call-overload]
            retention_bytes=int(values["retention.bytes"]),  # type: ignore[call-overload]
            segment_bytes=int(values["segment.bytes"]),  # type: ignore[call-overload]
            segment_ms=int(values["segment.ms"]),  # type: ignore[call-overload]
            max_message_bytes=int(values["max.message.bytes"]),  # type: ignore[call-overload]
            log_append_time=values["message.timestamp.type"] == "LogAppendTime",
            fsync=values["durability"] == "fsync",
            min_cleanable_dirty_ratio=float(values["min.cleanable.dirty.ratio"]),  # type: ignore[arg-type]
            min_compaction_lag_ms=int(values["min.compaction.lag.ms"]),  # type: ignore[call-overload]
            max_compaction_lag_ms=int(values["max.compaction.lag.ms"]),  # type: ignore[call-overload]
            delete_retention_ms=int(values["delete.retention.ms"]),  # type: ignore[call-overload]
            remote_storage_enable=bool(values["remote.storage.enable"]),
            local_retention_ms=int(values["local.retention.ms"]),  # type: ignore[call-overload]
            local_retention_bytes=int(values["local.retention.bytes"]),  # type: ignore[call-overload]
        )

    @property
    def deletes(self) -> bool:
        """True when retention may delete segments."""
        return "delete" in self.cleanup_policy.split(",")

    @property
    def effective_local_retention_ms(self) -> int:
        """``local.retention.ms``, with -2 meaning ``retention.ms`` (KIP-405); -1: forever.
        Never longer than the total retention."""
        local = self.retention_ms if self.local_retention_ms == -2 else self.local_retention_ms
        if self.retention_ms >= 0 and (local < 0 or local > self.retention_ms):
            return self.retention_ms
        return local

    @property
    def effective_local_retention_bytes(self) -> int:
        """``local.retention.bytes``, with -2 meaning ``retention.bytes``; -1: no limit.
        Never larger than the total retention."""
        local = (self.retention_bytes if self.local_retention_bytes == -2
                 else self.local_retention_bytes)
        if self.retention_bytes >= 0 and (local < 0 or local > self.retention_bytes):
            return self.retention_bytes
        return local

    @property
    def compacts(self) -> bool:
        """True when the log cleaner keeps the latest record per key (``compact`` policy)."""
        return "compact" in self.cleanup_policy.split(",")

    @property
    def max_segment_ms(self) -> int:
        """The age at which the active segment rolls: ``segment.ms``, or for a compacted topic
        at most ``max.compaction.lag.ms`` (records in the active segment are never cleaned,
        so it must roll for the lag bound to hold), as Kafka does."""
        if self.compacts:
            return min(self.segment_ms, self.max_compaction_lag_ms)
        return self.segment_ms


DEFAULT_TOPIC_CONFIG = TopicConfig.from_overrides({})


def effective_config(overrides: Mapping[str, str]) -> dict[str, str]:
    """Every known key with its effective value (override or default), for describe output."""
    return {
        name: overrides.get(name, key.default) for name, key in sorted(TOPIC_CONFIG_KEYS.items())
    }
