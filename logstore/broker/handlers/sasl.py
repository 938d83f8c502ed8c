"""SaslHandshake (v0-v1) and SaslAuthenticate (v0-v2): SASL authentication on a SASL listener.

SaslHandshake selects a mechanism of the listener's ``sasl_mechanisms`` (the response lists
them); an unknown one gets UNSUPPORTED_SASL_MECHANISM and the connection is closed. After a v1
handshake each SaslAuthenticate carries one SASL token each way; after a v0 handshake the
tokens travel as raw frames (the connection handles them). A failed authentication is answered
with SASL_AUTHENTICATION_FAILED and Kafka's message, logged once, and closes the connection.

On a listener without SASL, or once authenticated, both APIs answer ILLEGAL_SASL_STATE and the
connection goes on (as Kafka's request handler does). Re-authentication (KIP-368) is not
offered: ``session_lifetime_ms`` is 0.
"""

from __future__ import annotations

from typing import Any

from logstore.broker.auth.sasl import SaslState
from logstore.broker.dispatch import Dispatcher, RequestContext
from logstore.broker.entities import build, response_module
from logstore.errors import (
    AuthenticationError,
    IllegalSaslStateError,
    UnsupportedSaslMechanismError,
)
from logstore.protocol.apis import ApiKey, VersionRange

HANDSHAKE_VERSIONS = VersionRange(0, 1)
AUTHENTICATE_VERSIONS = VersionRange(0, 2)
_NONE = 0


def register(dispatcher: Dispatcher) -> None:
    dispatcher.register(ApiKey.SASL_HANDSHAKE, HANDSHAKE_VERSIONS, sasl_handshake)
    dispatcher.register(ApiKey.SASL_AUTHENTICATE, AUTHENTICATE_VERSIONS, sasl_authenticate)


async def sasl_handshake(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.SASL_HANDSHAKE, ctx.api_version)
    session = ctx.session
    sasl = session.sasl if session is not None else None
    if session is None or sasl is None or sasl.state is not SaslState.HANDSHAKE:
        if session is not None and sasl is not None and not sasl.authenticated:
            session.close_after_response = True  # a second handshake mid-authentication
        return build(module.SaslHandshakeResponse, error_code=IllegalSaslStateError.error_code,
                     mechanisms=())
    mechanisms = tuple(sasl.mechanisms)
    if not sasl.handshake(request.mechanism, raw_tokens=ctx.api_version == 0):
        ctx.services.security.authentication_failed(session, ctx.peer, AuthenticationError(
            f"unsupported SASL mechanism {request.mechanism!r} (enabled: "
            f"{', '.join(mechanisms)})"))
        return build(module.SaslHandshakeResponse,
                     error_code=UnsupportedSaslMechanismError.error_code, mechanisms=mechanisms)
    return build(module.SaslHandshakeResponse, error_code=_NONE, mechanisms=mechanisms)


async def sasl_authenticate(ctx: RequestContext, request: Any) -> Any:
    module = response_module(ApiKey.SASL_AUTHENTICATE, ctx.api_version)
    session = ctx.session
    sasl = session.sasl if session is not None else None
    if session is None or sasl is None or sasl.authenticated:
        return build(module.SaslAuthenticateResponse,
                     error_code=IllegalSaslStateError.error_code,
                     error_message="SaslAuthenticate on a connection that is not "
                                   "authenticating (no SASL on this listener, or done)",
                     auth_bytes=b"", session_lifetime_ms=0)
    try:
        if sasl.raw_tokens:
            raise IllegalSaslStateError("SaslAuthenticate after a v0 SaslHandshake (which "
                                        "sends raw tokens)")
        answer = await sasl.step(request.auth_bytes)
    except AuthenticationError as exc:
        ctx.services.security.authentication_failed(session, ctx.peer, exc)
        return build(module.SaslAuthenticateResponse, error_code=exc.error_code,
                     error_message=str(exc), auth_bytes=b"", session_lifetime_ms=0)
    if sasl.authenticated:
        ctx.services.security.authenticated(session, ctx.peer)
    return build(module.SaslAuthenticateResponse, error_code=_NONE, error_message=None,
                 auth_bytes=answer, session_lifetime_ms=0)
