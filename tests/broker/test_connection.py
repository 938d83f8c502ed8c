"""The broker's connection handling over raw sockets: ApiVersions negotiation, request order,
frame limits and hostile bytes (each closes that connection only)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from kio.schema.api_versions.v0.request import ApiVersionsRequest as ApiVersionsV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsV3
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v1.request import MetadataRequest as MetadataV1

from logstore.protocol.apis import ApiKey

API_VERSIONS = int(ApiKey.API_VERSIONS)


@pytest.fixture
def api_versions(wire: Any) -> Any:
    """``api_versions(sock, version, correlation_id)``: one ApiVersions round trip."""
    def call(sock: Any, version: int, correlation_id: int) -> Any:
        body = (ApiVersionsV0() if version == 0 else
                ApiVersionsV3(client_software_name="t", client_software_version="1"))
        sock.sendall(wire.request_frame(API_VERSIONS, version, correlation_id, body))
        payload = wire.read_frame(sock)
        assert struct.unpack(">i", payload[:4])[0] == correlation_id
        return wire.decode_response(API_VERSIONS, version, payload, flexible_header=False)

    return call


def test_api_versions_lists_what_is_served(connect, api_versions) -> None:
    sock = connect()
    for version in (0, 3):
        response = api_versions(sock, version, 7 + version)
        assert response.error_code == ErrorCode.none
        served = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        assert served[API_VERSIONS] == (0, 3)
        assert served[int(ApiKey.METADATA)] == (1, 12)
        assert served[int(ApiKey.PRODUCE)] == (3, 9)
        assert served[int(ApiKey.FETCH)] == (4, 12)


def test_an_unknown_api_versions_version_gets_the_ranges_in_v0_form(connect, wire,
                                                                  api_versions) -> None:
    sock = connect()
    # Version 99 of ApiVersions: the body is ignored; the answer is a v0 body with an error.
    payload = struct.pack(">hhih", API_VERSIONS, 99, 5, 4) + b"test"
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    response = wire.decode_response(API_VERSIONS, 0, wire.read_frame(sock), flexible_header=False)
    assert response.error_code == ErrorCode.unsupported_version
    assert {k.api_key for k in response.api_keys} >= {API_VERSIONS, int(ApiKey.FETCH)}
    # The connection still serves.
    assert api_versions(sock, 3, 6).error_code == ErrorCode.none


def test_pipelined_requests_are_answered_in_order(connect, wire) -> None:
    sock = connect()
    frames = b"".join(
        wire.request_frame(int(ApiKey.METADATA), 1, correlation, MetadataV1(topics=()))
        if correlation % 2 else
        wire.request_frame(API_VERSIONS, 0, correlation, ApiVersionsV0())
        for correlation in range(20))
    sock.sendall(frames)
    answered = [struct.unpack(">i", wire.read_frame(sock)[:4])[0] for _ in range(20)]
    assert answered == list(range(20))


def test_an_oversized_frame_closes_that_connection_only(connect, broker, wire,
                                                       api_versions) -> None:
    bad = connect()
    good = connect()
    bad.sendall(struct.pack(">i", broker.broker.config.max_request_bytes + 1))
    assert wire.read_frame(bad) == b""  # closed, without reading (or allocating) the frame
    assert api_versions(good, 3, 1).error_code == ErrorCode.none
    assert broker.broker.metrics.protocol_errors == 1


def test_garbage_closes_the_connection_and_the_broker_goes_on(connect, wire,
                                                            api_versions) -> None:
    for junk in (b"\x00\x00\x00\x04\xff\xff\xff\xff",          # unknown API key -1
                 b"\x00\x00\x00\x02\x00\x03",                   # header cut short
                 struct.pack(">i", 12) + struct.pack(">hhih", 3, 1, 1, 500) + b"xx"):
        sock = connect()
        sock.sendall(junk)
        assert wire.read_frame(sock) == b""
    assert api_versions(connect(), 0, 1).error_code == ErrorCode.none


def test_an_unsupported_version_of_another_api_closes_the_connection(connect, wire) -> None:
    sock = connect()
    payload = struct.pack(">hhih", int(ApiKey.FETCH), 3, 1, -1)  # Fetch v3: below the range
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    assert wire.read_frame(sock) == b""


def test_max_connections_refuses_the_next_connection(tmp_path, wire, api_versions) -> None:
    import socket

    import logstore
    from logstore.broker import Broker, BrokerConfig

    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as log:
        broker = Broker(log, config=BrokerConfig(listen_port=0, max_connections=2))
        broker.start()
        try:
            assert broker.address is not None
            kept = [socket.create_connection(broker.address, timeout=10) for _ in range(2)]
            for sock in kept:
                assert api_versions(sock, 0, 1).error_code == ErrorCode.none
            extra = socket.create_connection(broker.address, timeout=10)
            assert wire.read_frame(extra) == b""
            assert broker.metrics.connections_refused == 1
            for sock in [*kept, extra]:
                sock.close()
        finally:
            broker.stop()


def test_an_idle_connection_is_closed_and_an_active_one_kept(tmp_path, wire, api_versions) -> None:
    import socket
    import time

    import logstore
    from logstore.broker import Broker, BrokerConfig

    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as log:
        broker = Broker(log, config=BrokerConfig(listen_port=0, idle_timeout_ms=400))
        broker.start()
        try:
            assert broker.address is not None
            idle = socket.create_connection(broker.address, timeout=10)
            active = socket.create_connection(broker.address, timeout=10)
            assert api_versions(idle, 0, 1).error_code == ErrorCode.none
            for correlation_id in range(2, 14):  # 1.2 s: three idle timeouts
                assert api_versions(active, 0, correlation_id).error_code == ErrorCode.none
                time.sleep(0.1)
            assert wire.read_frame(idle) == b""  # closed by the broker
            idle.close()
            active.close()
        finally:
            broker.stop()
