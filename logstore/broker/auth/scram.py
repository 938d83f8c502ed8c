"""SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka use them) and PLAIN checked
against stored SCRAM credentials.

* :func:`make_credential` turns a password into what the metadata store keeps (salt,
  iterations, StoredKey, ServerKey); :func:`verify_password` checks a password against it by
  deriving the keys again (how PLAIN is verified: there is no stored password to compare).
* :class:`ScramServer` is the server side of one exchange: ``client_first`` (returns the user
  name to look up), ``server_first`` (given the stored credential, or None for an unknown user:
  the exchange then goes on with a made-up salt and fails at the proof, so a client cannot tell
  unknown users from wrong passwords), ``client_final`` (checks the proof, returns the server's
  signature).

As Kafka: passwords and user names are UTF-8 without SASLprep; channel binding is not
supported (``p=`` is refused, ``y`` and ``n`` accepted); an authorization id must equal the
user name; the ``tokenauth`` extension (delegation tokens) is refused.

Pure computation, no I/O. A :class:`ScramServer` is used by one connection at a time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from logstore.backends.security_records import (
    DEFAULT_ITERATIONS,
    ScramCredential,
    ScramMechanism,
    check_user_name,
)
from logstore.errors import AuthenticationError, InvalidArgumentError

#: Key of the made-up salts of unknown users (fixed per process, so retries see the same salt).
_FAKE_SALT_KEY = os.urandom(32)


def invalid_credentials(mechanism: str) -> AuthenticationError:
    """Kafka's message for a failed authentication (the same whatever went wrong)."""
    return AuthenticationError(f"Authentication failed during authentication due to invalid "
                               f"credentials with SASL mechanism {mechanism}")


def _hmac(mechanism: ScramMechanism, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, mechanism.hash_name).digest()


def _hash(mechanism: ScramMechanism, data: bytes) -> bytes:
    return hashlib.new(mechanism.hash_name, data).digest()


def salted_password(mechanism: ScramMechanism, password: str, salt: bytes,
                    iterations: int) -> bytes:
    """RFC 5802's ``Hi(password, salt, i)``: PBKDF2 with the mechanism's HMAC."""
    return hashlib.pbkdf2_hmac(mechanism.hash_name, password.encode("utf-8"), salt, iterations)


def _keys(mechanism: ScramMechanism, salted: bytes) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of a salted password."""
    client_key = _hmac(mechanism, salted, b"Client Key")
    return _hash(mechanism, client_key), _hmac(mechanism, salted, b"Server Key")


def make_credential(user: str, password: str, mechanism: ScramMechanism, *,
                    iterations: int = DEFAULT_ITERATIONS, created_ms: int = 0,
                    salt: bytes | None = None) -> ScramCredential:
    """The SCRAM credential of ``user`` with ``password`` (a fresh random salt unless given).

    Raises InvalidArgumentError for an empty password or a bad user name or iteration count.
    """
    if not isinstance(password, str) or not password:
        raise InvalidArgumentError("a password must be a non-empty string")
    salt = os.urandom(32) if salt is None else salt
    # Validate the cheap fields before spending the key derivation on them.
    ScramCredential(user, mechanism, salt, iterations, b"\0" * mechanism.digest_size,
                    b"\0" * mechanism.digest_size, created_ms)
    stored_key, server_key = _keys(mechanism, salted_password(mechanism, password, salt,
                                                              iterations))
    return ScramCredential(user, mechanism, salt, iterations, stored_key, server_key, created_ms)


def verify_password(credential: ScramCredential, password: str) -> bool:
    """Whether ``password`` is the one ``credential`` was made from (constant-time compare)."""
    mechanism = credential.mechanism
    stored_key, _ = _keys(mechanism, salted_password(mechanism, password, credential.salt,
                                                     credential.iterations))
    return hmac.compare_digest(stored_key, credential.stored_key)


def fake_credential(user: str, mechanism: ScramMechanism) -> ScramCredential:
    """A credential no password matches, with a salt stable per user name (for unknown users,
    so the exchange looks the same as for a known one)."""
    salt = _hmac(ScramMechanism.SCRAM_SHA_256, _FAKE_SALT_KEY, user.encode("utf-8"))
    unmatched = os.urandom(mechanism.digest_size)
    try:
        check_user_name(user)
    except InvalidArgumentError:
        user = "unknown"  # a name no user can have: the credential only has to look real
    return ScramCredential(user, mechanism, salt, DEFAULT_ITERATIONS, unmatched, unmatched)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _decode_saslname(text: str) -> str:
    """RFC 5802's saslname: ``=2C`` is ``,`` and ``=3D`` is ``=``; any other ``=`` is invalid."""
    if "=" in text.replace("=2C", "").replace("=3D", ""):
        raise ValueError("invalid escape in a SCRAM name")
    return text.replace("=2C", ",").replace("=3D", "=")


def _attributes(text: str) -> list[tuple[str, str]]:
    """``a=1,b=2`` -> [("a", "1"), ("b", "2")]; every part must be ``NAME=VALUE``."""
    parts = []
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise ValueError(f"malformed SCRAM attribute {part!r}")
        parts.append((name, value))
    return parts


@dataclass(slots=True)
class _FirstMessage:
    gs2_header: str
    bare: str
    user: str
    nonce: str


class ScramServer:
    """The server side of one SCRAM exchange (see the module docstring). Each method raises
    :class:`AuthenticationError` (Kafka's message) on anything wrong; the connection is then
    closed."""

    def __init__(self, mechanism: ScramMechanism, *, server_nonce: str | None = None) -> None:
        """``server_nonce``: the server's part of the nonce (random unless given: tests)."""
        self.mechanism = mechanism
        self._server_nonce = server_nonce or secrets.token_urlsafe(24)
        self._first: _FirstMessage | None = None
        self._server_first = ""
        self._nonce = ""
        self._credential: ScramCredential | None = None
        self.user: str | None = None
        """The authenticated user, once :meth:`client_final` succeeded."""

    def _fail(self) -> AuthenticationError:
        return invalid_credentials(self.mechanism.value)

    def client_first(self, message: bytes) -> str:
        """Parse the client's first message; the user name whose credential to look up."""
        if self._first is not None:
            raise self._fail()
        try:
            text = message.decode("utf-8")
            cbind, sep1, rest = text.partition(",")
            authzid, sep2, bare = rest.partition(",")
            if not sep1 or not sep2 or cbind not in ("n", "y"):
                # "p=...": the client wants channel binding, which this server does not do.
                raise ValueError("unsupported channel binding")
            attributes = _attributes(bare)
            if attributes and attributes[0][0] == "m":
                raise ValueError("mandatory extension")
            if len(attributes) < 2 or attributes[0][0] != "n" or attributes[1][0] != "r":
                raise ValueError("expected n=USER,r=NONCE")
            user = _decode_saslname(attributes[0][1])
            nonce = attributes[1][1]
            extensions = dict(attributes[2:])
            if extensions.get("tokenauth", "").lower() == "true":
                raise ValueError("delegation tokens are not supported")
            if authzid and (not authzid.startswith("a=")
                            or _decode_saslname(authzid[2:]) != user):
                raise ValueError("an authorization id different from the user name")
            if not user or not nonce or any(not 0x21 <= ord(c) <= 0x7E or c == ","
                                            for c in nonce):
                raise ValueError("empty user name or bad nonce")
        except ValueError:  # UnicodeDecodeError included
            raise self._fail() from None
        self._first = _FirstMessage(f"{cbind},{authzid},", bare, user, nonce)
        return user

    def server_first(self, credential: ScramCredential | None) -> bytes:
        """The server's first message, for the stored ``credential`` (None: unknown user)."""
        first = self._first
        if first is None or self._server_first:
            raise self._fail()
        if credential is None or credential.mechanism is not self.mechanism:
            credential = fake_credential(first.user, self.mechanism)
        self._credential = credential
        self._nonce = first.nonce + self._server_nonce
        self._server_first = (f"r={self._nonce},s={_b64encode(credential.salt)},"
                              f"i={credential.iterations}")
        return self._server_first.encode("ascii")

    def client_final(self, message: bytes) -> bytes:
        """Check the client's proof; the server's final message (its signature)."""
        first, credential = self._first, self._credential
        if first is None or credential is None or self.user is not None:
            raise self._fail()
        try:
            text = message.decode("utf-8")
            without_proof, sep, proof_text = text.rpartition(",p=")
            if not sep:
                raise ValueError("no proof")
            attributes = dict(_attributes(without_proof))
            if attributes.get("r") != self._nonce:
                raise ValueError("nonce mismatch")
            if _b64decode(attributes.get("c", "")).decode("utf-8") != first.gs2_header:
                raise ValueError("channel binding mismatch")
            proof = _b64decode(proof_text)
        except (ValueError, binascii.Error):
            raise self._fail() from None
        mechanism = self.mechanism
        auth_message = f"{first.bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(mechanism, credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise self._fail()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(_hash(mechanism, client_key), credential.stored_key):
            raise self._fail()
        self.user = first.user
        server_signature = _hmac(mechanism, credential.server_key, auth_message)
        return f"v={_b64encode(server_signature)}".encode("ascii")


def parse_plain(message: bytes) -> tuple[str, str]:
    """(user, password) of a PLAIN message (RFC 4616: ``authzid NUL authcid NUL passwd``).

    Raises :class:`AuthenticationError` for a malformed message or an authorization id other
    than the user (as Kafka)."""
    try:
        authzid, authcid, password = message.decode("utf-8").split("\0")
    except ValueError:  # not UTF-8, or not three parts
        raise invalid_credentials("PLAIN") from None
    if not authcid or not password or (authzid and authzid != authcid):
        raise invalid_credentials("PLAIN")
    return authcid, password
