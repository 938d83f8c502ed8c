"""SCRAM and PLAIN on the server side (pure functions): RFC 7677's example exchange byte for
byte, credentials that never hold the password, PLAIN checked by deriving the stored keys, and
malformed or dishonest client messages failing with Kafka's message."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

import pytest
from logstore.backends.security_records import ScramCredential, ScramMechanism

from logstore.broker.auth import scram
from logstore.broker.auth.sasl import SaslAuthenticator, SaslState
from logstore.errors import AuthenticationError, IllegalSaslStateError, InvalidArgumentError

SHA256 = ScramMechanism.SCRAM_SHA_256
SHA512 = ScramMechanism.SCRAM_SHA_512

# RFC 7677, section 3.
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_credential() -> ScramCredential:
    return scram.make_credential("user", "pencil", SHA256, iterations=4096, salt=RFC_SALT)


def test_the_rfc_7677_exchange_byte_for_byte() -> None:
    server = scram.ScramServer(SHA256, server_nonce=RFC_SERVER_NONCE)
    assert server.client_first(RFC_CLIENT_FIRST) == "user"
    assert server.server_first(rfc_credential()) == RFC_SERVER_FIRST
    assert server.client_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.user == "user"


def test_a_wrong_proof_fails_with_kafkas_message() -> None:
    server = scram.ScramServer(SHA256, server_nonce=RFC_SERVER_NONCE)
    server.client_first(RFC_CLIENT_FIRST)
    server.server_first(scram.make_credential("user", "not pencil", SHA256, iterations=4096,
                                              salt=RFC_SALT))
    with pytest.raises(AuthenticationError, match="invalid credentials with SASL mechanism "
                                                  "SCRAM-SHA-256"):
        server.client_final(RFC_CLIENT_FINAL)
    assert server.user is None


def test_an_unknown_user_gets_a_stable_made_up_salt_and_fails_at_the_proof() -> None:
    salts = []
    for _ in range(2):
        server = scram.ScramServer(SHA512)
        server.client_first(b"n,,n=nobody,r=abc")
        first = server.server_first(None).decode()
        salts.append(first.split(",")[1])
        with pytest.raises(AuthenticationError):
            server.client_final(f"c=biws,r={first.split(',')[0][2:]},p=AAAA".encode())
    assert salts[0] == salts[1]


@pytest.mark.parametrize("message", [
    b"p=tls-unique,,n=user,r=abc",   # channel binding: not supported
    b"n,,m=ext,n=user,r=abc",        # a mandatory extension
    b"n,a=admin,n=user,r=abc",       # an authorization id other than the user
    b"n,,n=us=er,r=abc",             # a bad escape in the name
    b"n,,r=abc,n=user",              # attributes out of order
    b"n,,n=user,r=a,b,tokenauth=true",
    b"n,,n=user,r=abc,tokenauth=true",  # delegation tokens: not supported
    b"\xff\xfe",
])
def test_malformed_client_first_messages_fail(message: bytes) -> None:
    with pytest.raises(AuthenticationError):
        scram.ScramServer(SHA256).client_first(message)


def test_an_escaped_name_and_its_authorization_id_are_accepted() -> None:
    assert scram.ScramServer(SHA256).client_first(b"y,a=a=2Cb=3D,n=a=2Cb=3D,r=x") == "a,b="


@pytest.mark.parametrize("final", [
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",  # nonce
    (b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),  # another gs2 header
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",  # no proof
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!",  # not base64
])
def test_a_dishonest_client_final_message_fails(final: bytes) -> None:
    server = scram.ScramServer(SHA256, server_nonce=RFC_SERVER_NONCE)
    server.client_first(RFC_CLIENT_FIRST)
    server.server_first(rfc_credential())
    with pytest.raises(AuthenticationError):
        server.client_final(final)


def test_messages_out_of_turn_fail() -> None:
    server = scram.ScramServer(SHA256)
    with pytest.raises(AuthenticationError):
        server.client_final(RFC_CLIENT_FINAL)
    server.client_first(RFC_CLIENT_FIRST)
    with pytest.raises(AuthenticationError):
        server.client_first(RFC_CLIENT_FIRST)


@pytest.mark.parametrize("mechanism", list(ScramMechanism))
def test_a_credential_holds_the_derived_keys_and_never_the_password(
        mechanism: ScramMechanism) -> None:
    credential = scram.make_credential("alice", "s3cret", mechanism, iterations=4096)
    salted = hashlib.pbkdf2_hmac(mechanism.hash_name, b"s3cret", credential.salt, 4096)
    client_key = hmac.new(salted, b"Client Key", mechanism.hash_name).digest()
    assert credential.stored_key == hashlib.new(mechanism.hash_name, client_key).digest()
    assert credential.server_key == hmac.new(salted, b"Server Key",
                                             mechanism.hash_name).digest()
    assert "s3cret" not in repr(credential) and "salt" not in repr(credential)
    assert scram.verify_password(credential, "s3cret")
    assert not scram.verify_password(credential, "s3cret ")
    other = scram.make_credential("alice", "s3cret", mechanism, iterations=4096)
    assert other.salt != credential.salt, "every credential gets its own random salt"


def test_credentials_refuse_weak_or_bad_values() -> None:
    with pytest.raises(InvalidArgumentError, match="iterations"):
        scram.make_credential("alice", "pw", SHA256, iterations=4095)
    with pytest.raises(InvalidArgumentError, match="password"):
        scram.make_credential("alice", "", SHA256)
    with pytest.raises(InvalidArgumentError, match="user name"):
        scram.make_credential("a\nb", "pw", SHA256)


def test_plain_messages() -> None:
    assert scram.parse_plain(b"\0alice\0pw") == ("alice", "pw")
    assert scram.parse_plain(b"alice\0alice\0pw") == ("alice", "pw")
    for bad in (b"admin\0alice\0pw", b"\0alice\0", b"alice\0pw", b"\0\0pw", b"\xff\0a\0b"):
        with pytest.raises(AuthenticationError, match="SASL mechanism PLAIN"):
            scram.parse_plain(bad)


class _Store:
    """The two lookups an authenticator makes, over a dict."""

    def __init__(self, credentials: list[ScramCredential]) -> None:
        self.credentials = credentials

    def get_scram_credential(self, user: str, mechanism: ScramMechanism) -> Any:
        return next((c for c in self.credentials
                     if c.user == user and c.mechanism is mechanism), None)

    def list_scram_credentials(self, user: str | None = None) -> list[ScramCredential]:
        return [c for c in self.credentials if user is None or c.user == user]


async def _run(fn: Any, *args: Any) -> Any:
    return fn(*args)


def _authenticator(*credentials: ScramCredential) -> SaslAuthenticator:
    return SaslAuthenticator(("SCRAM-SHA-256", "PLAIN"), _Store(list(credentials)), _run)


def test_plain_is_checked_against_the_strongest_stored_credential() -> None:
    weak = scram.make_credential("alice", "old", SHA256, iterations=4096)
    strong = scram.make_credential("alice", "new", SHA512, iterations=4096)
    sasl = _authenticator(weak, strong)
    assert sasl.handshake("PLAIN", raw_tokens=False)
    assert asyncio.run(sasl.step(b"\0alice\0new")) == b""
    assert sasl.state is SaslState.AUTHENTICATED and sasl.user == "alice"
    sasl = _authenticator(weak, strong)
    sasl.handshake("PLAIN", raw_tokens=False)
    with pytest.raises(AuthenticationError):
        asyncio.run(sasl.step(b"\0alice\0old"))
    assert sasl.state is SaslState.FAILED


def test_the_handshake_and_steps_are_a_state_machine() -> None:
    sasl = _authenticator()
    with pytest.raises(IllegalSaslStateError, match="before a SaslHandshake"):
        asyncio.run(sasl.step(b"\0a\0b"))
    sasl = _authenticator()
    assert not sasl.handshake("SCRAM-SHA-512", raw_tokens=False)  # not enabled
    assert sasl.state is SaslState.FAILED
    sasl = _authenticator()
    assert sasl.handshake("SCRAM-SHA-256", raw_tokens=False)
    with pytest.raises(IllegalSaslStateError):
        sasl.handshake("PLAIN", raw_tokens=False)
