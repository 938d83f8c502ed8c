"""SASL on a connection: the handshake state machine and the mechanisms' exchanges.

A connection of a SASL listener starts in ``HANDSHAKE``: it may send ApiVersions and
SaslHandshake only. A handshake naming an enabled mechanism moves it to ``AUTHENTICATING``;
then each SaslAuthenticate request (handshake v1) or each raw token frame (handshake v0, the
pre-KIP-152 form: size-prefixed SASL tokens without Kafka headers) is one step of the
mechanism's exchange, until it succeeds (``AUTHENTICATED``: the connection's principal is then
``User:<name>``) or fails (``FAILED``: the broker answers, then closes the connection).

Mechanisms: PLAIN (one step: the password is checked against the user's stored SCRAM
credential, the strongest one, by deriving its keys) and SCRAM-SHA-256/512 (two steps, see
:mod:`.scram`). Credential lookups and key derivations block (the metadata store, PBKDF2), so
they run through the ``run`` coroutine the broker gives (its storage thread pool).

Thread-safety: one :class:`SaslAuthenticator` per connection, used on the event loop only.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from logstore.backends.security_records import ScramCredential, ScramMechanism
from logstore.broker.auth import scram
from logstore.errors import (
    AuthenticationError,
    IllegalSaslStateError,
    InvalidArgumentError,
    LogstoreError,
)

if TYPE_CHECKING:
    from logstore.backends.metadata import MetadataStore

_log = logging.getLogger("logstore.broker")

PLAIN = "PLAIN"
#: Every mechanism the broker implements (Kafka's names), the default of
#: ``BrokerConfig.sasl_mechanisms``.
SASL_MECHANISMS: tuple[str, ...] = (ScramMechanism.SCRAM_SHA_256.value,
                                    ScramMechanism.SCRAM_SHA_512.value, PLAIN)

Run = Callable[..., Awaitable[Any]]


class SaslState(enum.Enum):
    HANDSHAKE = "handshake"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"
    FAILED = "failed"


class SaslAuthenticator:
    """The SASL state of one connection (see the module docstring)."""

    def __init__(self, mechanisms: tuple[str, ...], store: MetadataStore, run: Run) -> None:
        self.mechanisms = mechanisms
        self._store = store
        self._run = run
        self.state = SaslState.HANDSHAKE
        self.mechanism: str | None = None
        self.raw_tokens = False
        """True after a v0 handshake: the next frames are raw SASL tokens."""
        self.user: str | None = None
        """The user the client claims (known after its first token), then the one it proved."""
        self._scram: scram.ScramServer | None = None

    @property
    def authenticated(self) -> bool:
        return self.state is SaslState.AUTHENTICATED

    def handshake(self, mechanism: str, *, raw_tokens: bool) -> bool:
        """Select ``mechanism``; False (and FAILED) if this listener does not enable it.
        Raises IllegalSaslStateError if a handshake was done already."""
        if self.state is not SaslState.HANDSHAKE:
            self.state = SaslState.FAILED
            raise IllegalSaslStateError("a SaslHandshake was already received on this "
                                        "connection")
        if mechanism not in self.mechanisms:
            self.state = SaslState.FAILED
            return False
        self.mechanism = mechanism
        self.raw_tokens = raw_tokens
        self.state = SaslState.AUTHENTICATING
        if mechanism != PLAIN:
            self._scram = scram.ScramServer(ScramMechanism(mechanism))
        return True

    async def step(self, token: bytes) -> bytes:
        """One client token in, the server's answer out. Raises AuthenticationError (the
        state is then FAILED) when authentication fails, IllegalSaslStateError out of turn."""
        if self.state is not SaslState.AUTHENTICATING:
            self.state = SaslState.FAILED
            raise IllegalSaslStateError(
                "SaslAuthenticate before a SaslHandshake" if self.mechanism is None
                else "SaslAuthenticate after authentication ended")
        try:
            if self._scram is None:
                answer = await self._plain(token)
            else:
                answer = await self._scram_step(self._scram, token)
        except AuthenticationError:
            self.state = SaslState.FAILED
            raise
        except LogstoreError as exc:  # the metadata store is unreachable, ...
            self.state = SaslState.FAILED
            _log.warning("cannot check credentials: %s", exc)
            raise AuthenticationError("Authentication failed: the credentials cannot be "
                                      "checked now; try again later") from None
        return answer

    async def _plain(self, token: bytes) -> bytes:
        user, password = scram.parse_plain(token)
        self.user = user
        if not await self._run(_check_plain, self._store, user, password):
            raise scram.invalid_credentials(PLAIN)
        self.state = SaslState.AUTHENTICATED
        return b""

    async def _scram_step(self, server: scram.ScramServer, token: bytes) -> bytes:
        if self.user is None:
            self.user = server.client_first(token)
            credential = await self._run(_lookup, self._store, self.user, server.mechanism)
            return server.server_first(credential)
        answer = server.client_final(token)
        self.state = SaslState.AUTHENTICATED
        return answer


def _lookup(store: MetadataStore, user: str,
            mechanism: ScramMechanism) -> ScramCredential | None:
    try:
        return store.get_scram_credential(user, mechanism)
    except InvalidArgumentError:
        return None  # a name no user can have (too long, control characters)


def _check_plain(store: MetadataStore, user: str, password: str) -> bool:
    """Whether ``password`` matches the user's strongest stored credential. An unknown user
    costs the same key derivation (a made-up credential), so timing does not tell."""
    try:
        found = store.list_scram_credentials(user)
    except InvalidArgumentError:
        found = []
    credential = max(found, key=lambda c: c.mechanism.digest_size, default=None)
    if credential is None:
        scram.verify_password(scram.fake_credential(user, ScramMechanism.SCRAM_SHA_512),
                              password)
        return False
    return scram.verify_password(credential, password)
