"""Fixtures of the broker tests: an in-process broker on a free loopback port, and raw frames."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kio.serial import entity_reader

import logstore
from logstore.broker import Broker, BrokerConfig
from logstore.protocol.codec import encode_request, response_type
from logstore.protocol.frames import frame_size


@dataclass
class RunningBroker:
    broker: Broker
    log: logstore.Log
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RunningBroker]:
    log = logstore.open(tmp_path / "data", maintenance_interval_ms=None, metadata_max_age_ms=0)
    running = Broker(log, config=BrokerConfig(listen_port=0))
    running.start()
    assert running.address is not None
    try:
        yield RunningBroker(running, log, running.address[1])
    finally:
        running.stop()
        log.close()


def request_frame(api_key: int, version: int, correlation_id: int, body: Any,
                  *, client_id: str | None = "test") -> bytes:
    """A whole request frame (size, header, body) encoded with kio."""
    payload = encode_request(api_key, version, correlation_id, body, client_id=client_id)
    return frame_size(len(payload)) + payload


def read_frame(sock: socket.socket) -> bytes:
    """One response frame's payload (without the size); b"" if the broker closed."""
    head = _read_exactly(sock, 4)
    if len(head) < 4:
        return b""
    (size,) = struct.unpack(">i", head)
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def decode_response(api_key: int, version: int, payload: bytes, *, flexible_header: bool) -> Any:
    """The response body of a frame payload (after its correlation id and header tags)."""
    offset = 4 + (1 if flexible_header else 0)
    body, _ = entity_reader(response_type(api_key, version))(payload, offset)
    return body


class Wire:
    """Raw frames for tests that speak the protocol directly (the ``wire`` fixture)."""

    request_frame = staticmethod(request_frame)
    read_frame = staticmethod(read_frame)
    decode_response = staticmethod(decode_response)


@pytest.fixture
def wire() -> type[Wire]:
    return Wire


@pytest.fixture
def connect(broker: RunningBroker) -> Iterator[Any]:
    sockets: list[socket.socket] = []

    def open_socket() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", broker.port), timeout=30)
        sockets.append(sock)
        return sock

    yield open_socket
    for sock in sockets:
        sock.close()
