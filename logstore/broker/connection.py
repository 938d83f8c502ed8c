"""One client connection: frames in, responses out, in request order.

Reading: the 4-byte size of each frame is checked against ``max_request_bytes``
(``socket.request.max.bytes``) before anything else is kept, so a connection never holds more
than one frame (and a partial next one). A frame too large, or one that does not parse, closes
this connection only; it is counted and logged once.

Processing: Kafka's rule is that requests on one connection are handled in the order they were
sent. Frames are queued and served one at a time by the connection's own task; reading pauses
while ``MAX_QUEUED_FRAMES`` wait. Storage work runs off the event loop (``BrokerServices.run``),
so a slow partition stalls only the connections waiting for it.

Writing: a response is a list of chunks (a fetch response carries the stored record batches as
they are). On a plain socket whose transport has nothing buffered they go out with one
``sendmsg`` (a scatter write, no copy); what the kernel does not take is handed to the
transport. TLS transports get the chunks one by one (they encrypt, hence copy, anyway).

Idle connections (nothing received for ``idle_timeout_ms``) are closed.

Security (see ``logstore.broker.auth.security``): on a TLS listener the connection is accepted
as plain TCP and upgraded with ``start_tls``, so a failed handshake (a plaintext client, a
client certificate that does not verify) is logged once and counted here, and the principal of
a client certificate is taken from the verified peer. On a SASL listener, until the session has
authenticated, only ApiVersions, SaslHandshake and SaslAuthenticate are dispatched (anything
else closes the connection), frames are limited to ``sasl_max_receive_bytes``, and after a v0
SaslHandshake the frames are raw SASL tokens, answered here. A handler that sets
``session.close_after_response`` (a failed authentication) has its response sent, then the
connection closed.

Thread-safety: lives on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from logstore.broker.auth.sasl import SaslState
from logstore.broker.dispatch import RequestContext
from logstore.errors import AuthenticationError, LogstoreError
from logstore.protocol.apis import ApiKey
from logstore.protocol.frames import SIZE, FrameError, read_fixed

if TYPE_CHECKING:
    import ssl

    from logstore.broker.auth.security import Session
    from logstore.broker.server import BrokerServices

_log = logging.getLogger("logstore.broker")

MAX_QUEUED_FRAMES = 64
#: sendmsg takes at most this many buffers at once (IOV_MAX is 1024 on Linux).
_MAX_IOV = 512
#: A TLS handshake not done by then is abandoned (and logged).
TLS_HANDSHAKE_TIMEOUT_S = 30.0
#: What a SASL listener serves before authentication (Kafka's rule).
PRE_AUTHENTICATION_APIS = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE,
                                     ApiKey.SASL_AUTHENTICATE})


class Connection(asyncio.Protocol):
    """The protocol object of one client connection."""

    def __init__(self, services: BrokerServices) -> None:
        self._services = services
        self._transport: asyncio.Transport | None = None
        self._socket: socket.socket | None = None
        self._buffer = bytearray()
        self._frames: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._closing = False
        self.peer = "?"
        self.last_active = time.monotonic()
        self.session: Session | None = None
        """Who the client is (set when the connection is made)."""

    @property
    def principal(self) -> str:
        """The client's principal: ``User:ANONYMOUS`` until authenticated."""
        return self.session.principal if self.session is not None else "User:ANONYMOUS"

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        security = self._services.security
        self.session = security.new_session(str(peer[0]) if isinstance(peer, tuple)
                                            else self.peer)
        if transport.get_extra_info("sslcontext") is None and security.ssl_context is None:
            sock = transport.get_extra_info("socket")
            self._socket = sock if isinstance(sock, socket.socket) else None
        if not self._services.connections.add(self):
            _log.warning("refused connection from %s: max.connections reached", self.peer)
            self._services.metrics.connection_refused()
            transport.abort()
            return
        self._services.metrics.connection_opened()
        if security.ssl_context is not None:
            transport.pause_reading()  # until start_tls takes the transport over
            self._task = asyncio.get_running_loop().create_task(
                self._start_tls(transport, security.ssl_context))
            return
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        buffer = self._buffer
        buffer += data
        limit = self._services.config.max_request_bytes
        setting = "socket.request.max.bytes"
        if self.session is not None and not self.session.authenticated:
            limit = min(limit, self._services.security.sasl_max_receive_bytes)
            setting = "before authentication, sasl.server.max.receive.size"
        while len(buffer) >= 4:
            (size,) = SIZE.unpack_from(buffer, 0)
            if size < 0 or size > limit:
                self._fail(f"a request frame of {size} bytes ({setting} is {limit})")
                return
            if len(buffer) < 4 + size:
                break
            self._frames.append(bytes(buffer[4:4 + size]))
            del buffer[:4 + size]
        if self._frames:
            self._wakeup.set()
            if len(self._frames) >= MAX_QUEUED_FRAMES and not self._paused:
                self._paused = True
                if self._transport is not None:
                    self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close when the client closes its side

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._services.connections.remove(self)
        self._wakeup.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # --- serving -------------------------------------------------------------------------------

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        """Upgrade to TLS, then serve; a failed handshake is logged once and closes."""
        security = self._services.security
        failure: BaseException | None = None
        try:
            tls = await asyncio.get_running_loop().start_tls(
                raw, self, context, server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - whatever failed, this connection is over
            failure, tls = exc, None
        if tls is None or self.session is None:
            # The SSL protocol never reports a failed handshake to connection_lost.
            if not self._closing:
                security.tls_handshake_failed(self.peer, failure)
            self._closing = True
            self._services.connections.remove(self)
            raw.abort()
            return
        self._transport = tls
        security.tls_established(self.session, tls.get_extra_info("peercert"))
        await self._serve()

    async def _serve(self) -> None:
        services = self._services
        while not self._closing:
            if not self._frames:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            frame = self._frames.popleft()
            if self._paused and len(self._frames) < MAX_QUEUED_FRAMES // 2:
                self._paused = False
                if self._transport is not None:
                    self._transport.resume_reading()
            session = self.session
            if session is not None and not session.authenticated:
                sasl = session.sasl
                if (sasl is not None and sasl.raw_tokens
                        and sasl.state is SaslState.AUTHENTICATING):
                    await self._raw_sasl_token(session, frame)
                    continue
                try:
                    api_key = read_fixed(frame)[0]
                except FrameError as exc:
                    self._fail(str(exc))
                    return
                if api_key not in PRE_AUTHENTICATION_APIS:
                    self._fail(f"API {api_key} requested before SASL authentication")
                    return
            started = time.perf_counter()
            try:
                answer = await services.dispatcher.dispatch(frame, self._context)
            except FrameError as exc:
                self._fail(str(exc))
                return
            except LogstoreError as exc:
                _log.warning("closing connection from %s: %s", self.peer, exc)
                self._close()
                return
            except Exception:  # noqa: BLE001 - a handler bug must not take the broker down
                _log.exception("closing connection from %s after an unexpected error",
                               self.peer)
                self._close()
                return
            services.metrics.request_done(frame, time.perf_counter() - started)
            if answer is not None:
                chunks, size = answer
                self._send([SIZE.pack(size), *chunks])
            if session is not None and session.close_after_response:
                self._close()
                return

    async def _raw_sasl_token(self, session: Session, token: bytes) -> None:
        """One SASL token after a v0 SaslHandshake: the answer goes back as a raw token; a
        failure closes the connection (v0 has no way to report it)."""
        security = self._services.security
        sasl = session.sasl
        if sasl is None:
            return
        try:
            answer = await sasl.step(token)
        except AuthenticationError as exc:
            security.authentication_failed(session, self.peer, exc)
            self._close()
            return
        if sasl.authenticated:
            security.authenticated(session, self.peer)
        self._send([SIZE.pack(len(answer)), answer])

    def _context(self, api_key: int, api_version: int, correlation_id: int,
                 client_id: str | None) -> RequestContext:
        return RequestContext(self._services, api_key, api_version, correlation_id, client_id,
                              self.peer, self.principal, session=self.session)

    def _send(self, chunks: list[Any]) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._services.metrics.bytes_out(sum(len(c) for c in chunks))
        sock = self._socket
        if sock is not None and transport.get_write_buffer_size() == 0:
            # Scatter write: the batches go to the kernel as they are stored.
            while chunks:
                try:
                    sent = sock.sendmsg(chunks[:_MAX_IOV])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self._close()
                    return
                chunks = _drop(chunks, sent)
                if sent == 0:
                    break
        for chunk in chunks:
            transport.write(chunk)

    def _fail(self, reason: str) -> None:
        """Close after a protocol error (logged once per connection, counted)."""
        if not self._closing:
            _log.warning("closing connection from %s: %s", self.peer, reason)
            self._services.metrics.protocol_error()
        self._close()

    def _close(self) -> None:
        self._closing = True
        self._frames.clear()
        if self._transport is not None:
            self._transport.close()

    def close_if_idle(self, idle_s: float) -> None:
        if time.monotonic() - self.last_active > idle_s and not self._frames:
            _log.info("closing idle connection from %s", self.peer)
            self._close()

    async def drain_and_close(self) -> None:
        """Stop reading, finish the queued requests, then close (broker shutdown)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()
        while self._frames and not self._closing:
            await asyncio.sleep(0.01)
        self._close()


def _drop(chunks: list[Any], sent: int) -> list[Any]:
    """``chunks`` without their first ``sent`` bytes."""
    index = 0
    while index < len(chunks) and sent >= len(chunks[index]):
        sent -= len(chunks[index])
        index += 1
    rest = chunks[index:]
    if rest and sent:
        rest[0] = memoryview(rest[0])[sent:]
    return rest
