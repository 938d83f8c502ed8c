"""The broker's security, put together: the listener's security protocol, its TLS context, the
sessions of connections, the authorizer, and how failures are logged and counted.

Security protocols (Kafka's names; one per listener, the role of
``listener.security.protocol.map``):

=================  =====  =====================================================
``PLAINTEXT``      no TLS  principal ``User:ANONYMOUS``
``SSL``            TLS     the client certificate's subject (``User:CN=...``) when
                           client auth is on and one is sent, else ANONYMOUS
``SASL_PLAINTEXT`` no TLS  ``User:<name>`` after SASL (PLAIN, SCRAM-SHA-256/512)
``SASL_SSL``       TLS     ``User:<name>`` after SASL (a client certificate is
                           checked, if asked for, but SASL names the principal)
=================  =====  =====================================================

On a SASL listener a connection may send only ApiVersions, SaslHandshake and
SaslAuthenticate until it has authenticated (anything else closes it, as Kafka does), and its
frames are limited to ``sasl_max_receive_bytes`` until then.

Logging: one warning per connection whose TLS handshake or authentication fails (the user
name, never a password), counted in :attr:`BrokerSecurity.authentication_failures` and
:attr:`BrokerSecurity.tls_handshake_failures`; successful authentications at debug level.

Thread-safety: used on the broker's event loop.
"""

from __future__ import annotations

import enum
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logstore.broker.auth.authorizer import Authorizer
from logstore.broker.auth.sasl import SaslAuthenticator
from logstore.broker.auth.tls import certificate_principal, server_context
from logstore.errors import InvalidArgumentError

if TYPE_CHECKING:
    from logstore.backends.metadata import MetadataStore
    from logstore.broker.server import BrokerConfig

_log = logging.getLogger("logstore.broker")

ANONYMOUS = "User:ANONYMOUS"

Run = Callable[..., Awaitable[Any]]


class SecurityProtocol(str, enum.Enum):
    """A listener's security protocol (see the module docstring)."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


@dataclass(slots=True)
class Session:
    """Who is at the other end of one connection: its address, its principal, its SASL
    state (None: the listener does not use SASL)."""

    host: str
    principal: str = ANONYMOUS
    sasl: SaslAuthenticator | None = None
    close_after_response: bool = False
    """Set by a handler whose response must be the connection's last (failed SASL)."""

    @property
    def authenticated(self) -> bool:
        """Whether requests other than ApiVersions and SASL ones may be served."""
        return self.sasl is None or self.sasl.authenticated


class BrokerSecurity:
    """The listener's security and the authorizer (see the module docstring)."""

    def __init__(self, config: BrokerConfig, store: MetadataStore, run: Run) -> None:
        self.protocol = SecurityProtocol(config.security_protocol)
        self.ssl_context: ssl.SSLContext | None = None
        if self.protocol.uses_tls:
            if not config.tls_cert_path or not config.tls_key_path:
                raise InvalidArgumentError(f"a {self.protocol.value} listener needs a TLS "
                                           "certificate and key")
            self.ssl_context = server_context(
                config.tls_cert_path, config.tls_key_path, key_password=config.tls_key_password,
                client_ca_path=config.tls_client_ca_path, client_auth=config.tls_client_auth)
        self.mechanisms = tuple(config.sasl_mechanisms)
        self.sasl_max_receive_bytes = config.sasl_max_receive_bytes
        self._store = store
        self._run = run
        self.authorizer = Authorizer(
            store, super_users=config.super_users,
            allow_everyone_if_no_acl_found=config.allow_everyone_if_no_acl_found,
            max_age_ms=config.acl_max_age_ms)
        self.authentication_failures = 0
        self.tls_handshake_failures = 0

    def new_session(self, host: str) -> Session:
        sasl = (SaslAuthenticator(self.mechanisms, self._store, self._run)
                if self.protocol.uses_sasl else None)
        return Session(host, ANONYMOUS, sasl)

    def tls_established(self, session: Session, peercert: dict[str, Any] | None) -> None:
        """After the handshake: an SSL listener's principal is the client certificate's."""
        principal = certificate_principal(peercert)
        if principal is not None and not self.protocol.uses_sasl:
            session.principal = principal

    def tls_handshake_failed(self, peer: str, exc: BaseException | None) -> None:
        self.tls_handshake_failures += 1
        reason = (getattr(exc, "reason", None) or str(exc) or type(exc).__name__
                  if exc is not None else "the client closed the connection")
        _log.warning("closing connection from %s: TLS handshake failed: %s", peer, reason)

    def authenticated(self, session: Session, peer: str) -> None:
        sasl = session.sasl
        if sasl is None or sasl.user is None:
            return
        session.principal = f"User:{sasl.user}"
        _log.debug("%s authenticated as %s with %s", peer, session.principal, sasl.mechanism)

    def authentication_failed(self, session: Session, peer: str, exc: BaseException) -> None:
        self.authentication_failures += 1
        session.close_after_response = True
        sasl = session.sasl
        user = sasl.user if sasl is not None else None
        _log.warning("closing connection from %s: authentication failed (%s%s): %s", peer,
                     sasl.mechanism if sasl is not None and sasl.mechanism else "SASL",
                     f", user {user[:64]!r}" if user else "", exc)
