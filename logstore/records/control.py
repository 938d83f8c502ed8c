"""Control records: the transaction markers (COMMIT / ABORT) a transaction coordinator writes.

A control batch has the transactional and control attribute bits set, the producer id and epoch
of the transaction, baseSequence -1, no compression, and exactly one record without headers.
That record's key and value are (Kafka's ControlRecordType key and EndTransactionMarker value;
all integers big-endian)::

    key    version  int16  0
           type     int16  0 = ABORT, 1 = COMMIT (KRaft uses other types for its own logs)
    value  version           int16  0
           coordinatorEpoch  int32  epoch of the coordinator that wrote the marker

Readers accept key/value versions above 0 as long as the version-0 fields are present, as Kafka
does (newer versions may only append fields). All functions are pure and thread-safe.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from logstore.errors import CorruptRecordError, InvalidArgumentError
from logstore.records.builder import BatchBuilder
from logstore.records.compression import Compression
from logstore.records.header import NO_PARTITION_LEADER_EPOCH, NO_SEQUENCE

CONTROL_KEY = struct.Struct(">hh")  # version, type
END_TXN_MARKER_VALUE = struct.Struct(">hi")  # version, coordinatorEpoch
CURRENT_CONTROL_KEY_VERSION = 0
CURRENT_END_TXN_MARKER_VERSION = 0
#: Coordinator epochs written here lie in [0, COORDINATOR_EPOCH_LIMIT) and wrap around.
COORDINATOR_EPOCH_LIMIT = 1 << 31


def coordinator_epoch_for(claim: int) -> int:
    """The coordinator epoch a marker carries for the transaction coordinator's ``claim`` (an
    ever-growing number, see ``coordinator.txn_state``)."""
    return claim % COORDINATOR_EPOCH_LIMIT


class ControlType(enum.IntEnum):
    """Types of control records this project writes and interprets."""

    ABORT = 0
    COMMIT = 1


@dataclass(frozen=True, slots=True)
class ControlRecord:
    """A parsed control record.

    ``type`` is a :class:`ControlType` for transaction markers and the raw int for other
    (KRaft) control types, which consumers skip. ``coordinator_epoch`` is -1 for those.
    """

    type: ControlType | int
    version: int
    coordinator_epoch: int

    @property
    def is_commit(self) -> bool:
        return self.type == ControlType.COMMIT

    @property
    def is_abort(self) -> bool:
        return self.type == ControlType.ABORT


def encode_control(control_type: ControlType | int, coordinator_epoch: int) -> tuple[bytes, bytes]:
    """Return the ``(key, value)`` bytes of a transaction marker."""
    try:
        kind = ControlType(control_type)
    except ValueError:
        raise InvalidArgumentError(f"unknown transaction marker type {control_type!r}") from None
    try:
        key = CONTROL_KEY.pack(CURRENT_CONTROL_KEY_VERSION, kind)
        value = END_TXN_MARKER_VALUE.pack(CURRENT_END_TXN_MARKER_VERSION, coordinator_epoch)
    except struct.error as exc:
        raise InvalidArgumentError(
            f"invalid coordinator epoch {coordinator_epoch!r}: {exc}"
        ) from None
    return key, value


def parse_control(key: bytes | None, value: bytes | None) -> ControlRecord:
    """Parse the key and value of a control batch's record.

    Raises :class:`CorruptRecordError` when the key is missing, shorter than 4 bytes or has a
    negative version, or when a transaction marker's value is missing, too short or has a
    negative version.
    """
    if key is None or len(key) < CONTROL_KEY.size:
        raise CorruptRecordError(f"control record key {key!r} is shorter than 4 bytes")
    version, raw_type = CONTROL_KEY.unpack_from(key)
    if version < 0:
        raise CorruptRecordError(f"control record key has negative version {version}")
    try:
        kind: ControlType | int = ControlType(raw_type)
    except ValueError:
        return ControlRecord(raw_type, version, -1)
    if value is None or len(value) < END_TXN_MARKER_VALUE.size:
        raise CorruptRecordError(f"transaction marker value {value!r} is shorter than 6 bytes")
    value_version, coordinator_epoch = END_TXN_MARKER_VALUE.unpack_from(value)
    if value_version < 0:
        raise CorruptRecordError(f"transaction marker has negative version {value_version}")
    return ControlRecord(kind, version, coordinator_epoch)


def build_control_batch(
    control_type: ControlType | int,
    *,
    producer_id: int,
    producer_epoch: int,
    coordinator_epoch: int,
    timestamp_ms: int,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
) -> bytes:
    """Build a complete control batch holding one COMMIT or ABORT marker (baseOffset 0)."""
    key, value = encode_control(control_type, coordinator_epoch)
    builder = BatchBuilder(
        compression=Compression.NONE,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=NO_SEQUENCE,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=partition_leader_epoch,
    )
    builder.append(timestamp_ms, key, value)
    return builder.build()
