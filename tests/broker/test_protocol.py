"""The protocol layer: the hand-written Fetch response encoder against kio's writer, and request
headers and bodies from hostile bytes (FrameError, never anything else, in bounded time)."""

from __future__ import annotations

import datetime
import importlib
import io
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer

from logstore.protocol import fetch_response
from logstore.protocol.codec import decode_request, encode_request, is_flexible
from logstore.protocol.fetch_response import PartitionFetch
from logstore.protocol.frames import FrameError, parse_request_header

I64 = st.integers(-1, 2**62)


def kio_fetch_response(version: int, topics: list[tuple[str, list[PartitionFetch]]]) -> bytes:
    module = importlib.import_module(f"kio.schema.fetch.v{version}.response")
    entries = []
    for name, partitions in topics:
        datas = []
        for p in partitions:
            values: dict[str, Any] = {
                "partition_index": p.partition, "error_code": ErrorCode(p.error_code),
                "high_watermark": p.high_watermark, "last_stable_offset": p.last_stable_offset,
                "aborted_transactions": None if p.aborted is None else tuple(
                    module.AbortedTransaction(producer_id=a, first_offset=b) for a, b in p.aborted),
                "records": b"".join(p.records)}
            if version >= 5:
                values["log_start_offset"] = p.log_start_offset
            if version >= 11:
                values["preferred_read_replica"] = p.preferred_read_replica
            if version >= 12 and p.diverging_epoch is not None:
                values["diverging_epoch"] = module.EpochEndOffset(
                    epoch=p.diverging_epoch[0], end_offset=p.diverging_epoch[1])
            datas.append(module.PartitionData(**values))
        entries.append(module.FetchableTopicResponse(topic=name, partitions=tuple(datas)))
    top: dict[str, Any] = {"throttle_time": datetime.timedelta(0), "responses": tuple(entries)}
    if version >= 7:
        top.update(error_code=ErrorCode.none, session_id=0)
    buffer = io.BytesIO()
    entity_writer(module.FetchResponse)(buffer, module.FetchResponse(**top))
    return buffer.getvalue()


partitions = st.builds(
    PartitionFetch,
    partition=st.integers(0, 1000),
    error_code=st.sampled_from([0, 1, 3, 56]),
    high_watermark=I64, last_stable_offset=I64, log_start_offset=I64,
    aborted=st.none() | st.lists(st.tuples(I64, I64), max_size=3),
    records=st.lists(st.binary(min_size=1, max_size=300), max_size=3),
    diverging_epoch=st.none() | st.tuples(st.integers(0, 1000), I64),
)
topics = st.lists(st.tuples(st.text(min_size=1, max_size=20), st.lists(partitions, max_size=3)),
                  max_size=3)


@settings(max_examples=300, deadline=None)
@given(version=st.integers(4, 12), topics=topics)
def test_the_fetch_response_encoder_writes_what_kio_writes(version: int, topics: Any) -> None:
    if version < 12:  # the diverging epoch is a v12 tagged field
        topics = [(name, [PartitionFetch(p.partition, p.error_code, p.high_watermark,
                                         p.last_stable_offset, p.log_start_offset, p.aborted,
                                         p.records) for p in ps]) for name, ps in topics]
    chunks, size = fetch_response.encode(version, topics)
    assert b"".join(chunks) == kio_fetch_response(version, topics)
    assert size == sum(len(c) for c in chunks)
    # The batches are their own chunks: sent as stored, never copied into one buffer.
    records = [r for _, ps in topics for p in ps for r in p.records]
    assert all(any(chunk is record for chunk in chunks) for record in records)


@settings(max_examples=2000, deadline=None)
@given(data=st.binary(max_size=200), flexible=st.booleans())
def test_request_headers_from_any_bytes_parse_or_raise_frame_error(data: bytes,
                                                                   flexible: bool) -> None:
    try:
        header = parse_request_header(data, flexible=flexible)
    except FrameError:
        return
    assert 8 <= header.body_offset <= len(data)


def _valid_fetch_frame() -> bytes:
    from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic

    body = FetchRequest(
        replica_id=-1, max_wait=datetime.timedelta(milliseconds=500), min_bytes=1,
        max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1,
        topics=(FetchTopic(topic="t", partitions=(FetchPartition(
            partition=0, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
            partition_max_bytes=1 << 20),)),),
        forgotten_topics_data=(), rack_id="")
    buffer = io.BytesIO()
    entity_writer(FetchRequest)(buffer, body)
    return buffer.getvalue()


@settings(max_examples=2000, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 200))
def test_mutated_request_bodies_parse_or_raise_frame_error(edits: Any, cut: int) -> None:
    body = bytearray(_valid_fetch_frame())
    for position, value in edits:
        body[position % len(body)] = value
    try:
        decode_request(1, 11, bytes(body[:max(cut, 1)]), 0)
    except FrameError:
        pass


def test_a_huge_declared_array_does_not_allocate_it() -> None:
    body = struct.pack(">iiiibii", -1, 500, 1, 1 << 20, 0, 0, -1) + struct.pack(">i", 2**31 - 1)
    try:
        decode_request(1, 11, body, 0)
    except FrameError:
        return
    raise AssertionError("a 2**31-element array out of 4 bytes parsed")


@given(version=st.integers(1, 12), correlation_id=st.integers(-(2**31), 2**31 - 1),
       client_id=st.none() | st.text(max_size=20),
       topics=st.none() | st.lists(st.text("abc-", min_size=1, max_size=10), max_size=3))
@settings(max_examples=60, deadline=None)
def test_encode_request_is_what_the_broker_decodes(version: int, correlation_id: int,
                                                   client_id: str | None,
                                                   topics: list[str] | None) -> None:
    module = importlib.import_module(f"kio.schema.metadata.v{version}.request")
    fields = {"topics": None if topics is None else tuple(
        module.MetadataRequestTopic(**({"name": t} if version < 10 else
                                       {"name": t, "topic_id": None})) for t in topics)}
    for name, value in (("allow_auto_topic_creation", False),
                        ("include_cluster_authorized_operations", True),
                        ("include_topic_authorized_operations", True)):
        if name in module.MetadataRequest.__dataclass_fields__:
            fields[name] = value
    body = module.MetadataRequest(**fields)
    frame = encode_request(3, version, correlation_id, body, client_id=client_id)
    header = parse_request_header(frame, flexible=is_flexible(3, version))
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (
        3, version, correlation_id, client_id)
    assert decode_request(3, version, frame, header.body_offset) == body
