"""Kafka RecordBatch v2 (magic 2): varints, CRC32C, compression, control records.

The public names of the subpackage; see each module for byte formats:

* :mod:`~logstore.records.header` - the 61-byte batch header: parse, validate, patch.
* :mod:`~logstore.records.builder` - encode records into a batch.
* :mod:`~logstore.records.reader` - decode (untrusted) batches into ConsumerRecords.
* :mod:`~logstore.records.compression` - gzip, snappy, lz4, zstd as Kafka writes them.
* :mod:`~logstore.records.control` - transaction markers.
* :mod:`~logstore.records.varint` - zigzag varints.
"""

from logstore.records.builder import BatchBuilder, encode_batch, estimate_record_size
from logstore.records.compression import Compression, compress, decompress
from logstore.records.control import (
    ControlRecord,
    ControlType,
    build_control_batch,
    encode_control,
    parse_control,
)
from logstore.records.header import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    check_crc,
    compute_crc,
    iter_headers,
    parse_header,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    validate_batch,
    write_crc,
)
from logstore.records.reader import decode_batch, iter_records
from logstore.records.varint import decode_varint, encode_varint, size_of_varint

__all__ = [
    "HEADER_SIZE",
    "LOG_OVERHEAD",
    "MAGIC",
    "BatchBuilder",
    "BatchHeader",
    "Compression",
    "ControlRecord",
    "ControlType",
    "build_control_batch",
    "check_crc",
    "compress",
    "compute_crc",
    "decode_batch",
    "decode_varint",
    "decompress",
    "encode_batch",
    "encode_control",
    "encode_varint",
    "estimate_record_size",
    "iter_headers",
    "iter_records",
    "parse_control",
    "parse_header",
    "set_base_offset",
    "set_log_append_time",
    "set_partition_leader_epoch",
    "size_of_varint",
    "validate_batch",
    "write_crc",
]
