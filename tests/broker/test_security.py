"""The broker's security with real clients and raw frames: TLS (server certificates, client
certificates and their principals), SASL (SCRAM-SHA-256/512 and PLAIN, against credentials in
the metadata store), what a SASL listener serves before authentication, how failures end a
connection, and ACLs limiting a principal to its topics.

Certificates are made once per module with ``cryptography``: a CA, a server certificate for
127.0.0.1, a client certificate (CN=carol,O=Example) and one from an unknown CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as CkTopicPartition
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsV3
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v9.request import MetadataRequest as MetadataV9
from kio.schema.sasl_authenticate.v2.request import (
    SaslAuthenticateRequest as SaslAuthenticateV2,
)
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest as SaslHandshakeV1

import logstore
from logstore.broker import Broker, BrokerConfig
from logstore.broker.auth import (
    AclBinding,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
    ScramMechanism,
    make_credential,
)
from logstore.protocol.apis import ApiKey

PASSWORD = "correct horse battery staple"
CAROL = "User:CN=carol,O=Example"


# --- certificates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    stranger_cert: str
    stranger_key: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(**parts: str) -> x509.Name:
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in parts.items()])


def _certificate(subject: x509.Name, key: Any, issuer: x509.Name, issuer_key: Any, *,
                 ca: bool = False, san: list[x509.GeneralName] | None = None,
                 usage: list[x509.ObjectIdentifier] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate, key: Any) -> tuple[str, str]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    ca_key, ca_name = _key(), _name(CN="logstore test CA")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    ca_path, _ = _write(directory, "ca", ca, ca_key)
    server_key = _key()
    server = _certificate(_name(CN="localhost"), server_key, ca_name, ca_key,
                          san=[x509.DNSName("localhost"),
                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                          usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_key = _key()
    client = _certificate(_name(O="Example", CN="carol"), client_key, ca_name, ca_key,
                          usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    other_key, other_name = _key(), _name(CN="another CA")
    stranger_key = _key()
    stranger = _certificate(_name(CN="mallory"), stranger_key, other_name, other_key,
                            usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return Certs(ca_path, *_write(directory, "server", server, server_key),
                 *_write(directory, "client", client, client_key),
                 *_write(directory, "stranger", stranger, stranger_key))


# --- brokers and clients ---------------------------------------------------------------------


@dataclass
class SecureBroker:
    broker: Broker
    log: logstore.Log
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def security(self) -> Any:
        return self.broker.services.security


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Callable[..., SecureBroker]]:
    """``secure_broker(users={...}, acls=[...], **BrokerConfig fields)``: a started broker
    whose metadata store holds those users (both SCRAM mechanisms) and ACLs."""
    started: list[tuple[Broker, logstore.Log]] = []

    def start(*, users: dict[str, str] | None = None, acls: list[AclBinding] | None = None,
              topics: tuple[str, ...] = (), **config: Any) -> SecureBroker:
        log = logstore.open(tmp_path / f"data{len(started)}", maintenance_interval_ms=None,
                            metadata_max_age_ms=0)
        for user, password in (users or {}).items():
            log.metadata.put_scram_credentials(user, [
                make_credential(user, password, mechanism, iterations=4096)
                for mechanism in ScramMechanism])
        if acls:
            log.metadata.add_acls(acls)
        for topic in topics:
            log.create_topic(topic)
        broker = Broker(log, config=BrokerConfig(listen_port=0, acl_max_age_ms=0, **config))
        broker.start()
        started.append((broker, log))
        assert broker.address is not None
        return SecureBroker(broker, log, broker.address[1])

    yield start
    for broker, log in started:
        broker.stop()
        log.close()


def _tls(certs: Certs) -> dict[str, Any]:
    return {"security_protocol": "SSL", "tls_cert_path": certs.server_cert,
            "tls_key_path": certs.server_key}


def _sasl_ssl(certs: Certs) -> dict[str, Any]:
    return {**_tls(certs), "security_protocol": "SASL_SSL"}


def _client(broker: SecureBroker, **config: Any) -> dict[str, Any]:
    return {"bootstrap.servers": broker.bootstrap, "socket.timeout.ms": 10_000,
            "message.timeout.ms": 15_000, **config}


def _sasl(user: str, password: str, mechanism: str, certs: Certs | None) -> dict[str, Any]:
    settings = {"security.protocol": "SASL_SSL" if certs else "SASL_PLAINTEXT",
                "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password}
    if certs is not None:
        settings["ssl.ca.location"] = certs.ca
    return settings


def produce(config: dict[str, Any], topic: str, count: int) -> list[Any]:
    """Produce ``count`` records; the delivery errors (empty: all delivered)."""
    producer = Producer(config)
    errors: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(error)

    for i in range(count):
        producer.produce(topic, value=b"value-%d" % i, on_delivery=delivered)
    assert producer.flush(30) == 0
    return errors


def consume(config: dict[str, Any], topic: str, count: int, *, group: str = "unused"
            ) -> list[Any]:
    """Up to ``count`` records of partition 0 from offset 0, or the first error."""
    settings = {k: v for k, v in config.items() if k != "message.timeout.ms"}
    consumer = Consumer({**settings, "group.id": group, "enable.auto.commit": False})
    consumer.assign([CkTopicPartition(topic, 0, 0)])
    got: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                return [message.error()]
            got.append(message.value())
    finally:
        consumer.close()
    return got


def wait_for_error(config: dict[str, Any]) -> Any:
    """The first error a producer's client reports while trying to reach the broker."""
    errors: list[Any] = []
    producer = Producer({**config, "error_cb": errors.append})
    producer.produce("anything", value=b"x")
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    producer.purge()
    producer.flush(1)
    assert errors, "the client reported no error"
    return errors[0]


# --- TLS and SASL with confluent-kafka ---------------------------------------------------------


def test_confluent_kafka_over_tls_and_scram_sha_512_produces_and_consumes(
        secure_broker, certs) -> None:
    # No ACL exists, so an authenticated user may do everything (and be idempotent).
    broker = secure_broker(users={"alice": PASSWORD}, **_sasl_ssl(certs))
    client = _client(broker, **_sasl("alice", PASSWORD, "SCRAM-SHA-512", certs))
    assert produce({**client, "enable.idempotence": True, "acks": "all"}, "orders", 50) == []
    assert consume(client, "orders", 50) == [b"value-%d" % i for i in range(50)]
    assert broker.security.authentication_failures == 0


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_scram_sha_256_and_plain_log_in_with_the_same_stored_credentials(
        secure_broker, certs, mechanism: str) -> None:
    broker = secure_broker(users={"alice": PASSWORD}, security_protocol="SASL_PLAINTEXT")
    client = _client(broker, **_sasl("alice", PASSWORD, mechanism, None))
    assert produce(client, "t", 5) == []
    assert consume(client, "t", 5) == [b"value-%d" % i for i in range(5)]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_a_wrong_password_fails_authentication_with_a_clear_error(
        secure_broker, certs, caplog, mechanism: str) -> None:
    broker = secure_broker(users={"alice": PASSWORD}, **_sasl_ssl(certs))
    with caplog.at_level(logging.WARNING, logger="logstore.broker"):
        error = wait_for_error(_client(broker, **_sasl("alice", "wrong password", mechanism,
                                                       certs)))
    assert error.code() == KafkaError._AUTHENTICATION
    assert (f"Authentication failed during authentication due to invalid credentials with "
            f"SASL mechanism {mechanism}") in error.str()
    lines = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    peers = [line.split()[3] for line in lines]  # "closing connection from HOST:PORT: ..."
    assert lines and len(set(peers)) == len(peers), "one line per failed connection"
    assert broker.security.authentication_failures >= len(lines)
    assert all("'alice'" in line and "wrong password" not in line for line in lines)
    # The broker goes on serving the right password.
    assert produce(_client(broker, **_sasl("alice", PASSWORD, mechanism, certs)), "t", 1) == []


def test_an_unknown_user_fails_like_a_wrong_password(secure_broker) -> None:
    broker = secure_broker(users={"alice": PASSWORD}, security_protocol="SASL_PLAINTEXT")
    error = wait_for_error(_client(broker, **_sasl("nobody", PASSWORD, "SCRAM-SHA-256", None)))
    assert error.code() == KafkaError._AUTHENTICATION
    assert "invalid credentials with SASL mechanism SCRAM-SHA-256" in error.str()


def test_a_plaintext_client_against_a_tls_port_fails_cleanly_and_the_broker_goes_on(
        secure_broker, certs, caplog) -> None:
    broker = secure_broker(**_tls(certs))
    with caplog.at_level(logging.WARNING, logger="logstore.broker"):
        sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        sock.sendall(b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff")
        assert _read_until_closed(sock) == b""  # the TLS handshake failed: closed
        sock.close()
        error = wait_for_error(_client(broker))
    assert error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)
    eventually(lambda: broker.security.tls_handshake_failures >= 2)
    assert any("TLS handshake failed" in r.getMessage() for r in caplog.records)
    assert produce(_client(broker, **{"security.protocol": "SSL", "ssl.ca.location": certs.ca}),
                   "t", 3) == []


def eventually(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (the broker counts a failure just after the client sees it)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the condition never became true"
        time.sleep(0.01)


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


# --- client certificates --------------------------------------------------------------------


def test_a_client_certificate_is_the_principal_its_acls_name(secure_broker, certs) -> None:
    broker = secure_broker(**_tls(certs), tls_client_ca_path=certs.ca,
                           tls_client_auth="required", topics=("other",),
                           acls=[AclBinding(CAROL, AclOperation.ALL, resource, "carol-",
                                            PatternType.PREFIXED)
                                 for resource in (ResourceType.TOPIC, ResourceType.GROUP)])
    client = _client(broker, **{"security.protocol": "SSL", "ssl.ca.location": certs.ca,
                                "ssl.certificate.location": certs.client_cert,
                                "ssl.key.location": certs.client_key})
    assert produce(client, "carol-events", 3) == []
    assert consume(client, "carol-events", 3, group="carol-app") == [
        b"value-0", b"value-1", b"value-2"]
    denied = produce(client, "other", 1)
    assert [e.code() for e in denied] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_required_client_auth_refuses_missing_and_unknown_certificates(
        secure_broker, certs) -> None:
    broker = secure_broker(**_tls(certs), tls_client_ca_path=certs.ca,
                           tls_client_auth="required")
    tls = {"security.protocol": "SSL", "ssl.ca.location": certs.ca}
    for extra in ({}, {"ssl.certificate.location": certs.stranger_cert,
                       "ssl.key.location": certs.stranger_key}):
        error = wait_for_error(_client(broker, **tls, **extra))
        assert error.code() in (KafkaError._SSL, KafkaError._TRANSPORT,
                                KafkaError._ALL_BROKERS_DOWN)
    eventually(lambda: broker.security.tls_handshake_failures >= 2)


def test_requested_client_auth_lets_a_client_without_certificate_in_anonymously(
        secure_broker, certs) -> None:
    broker = secure_broker(**_tls(certs), tls_client_ca_path=certs.ca,
                           tls_client_auth="requested", topics=("public", "private"),
                           acls=[AclBinding("User:ANONYMOUS", AclOperation.WRITE,
                                            ResourceType.TOPIC, "public")])
    client = _client(broker, **{"security.protocol": "SSL", "ssl.ca.location": certs.ca})
    assert produce(client, "public", 1) == []
    assert [e.code() for e in produce(client, "private", 1)] == [
        KafkaError.TOPIC_AUTHORIZATION_FAILED]


# --- ACLs with real clients -------------------------------------------------------------------


def test_a_principal_is_limited_to_its_topics(secure_broker, certs) -> None:
    acls = [AclBinding(f"User:{user}", AclOperation.ALL, resource, f"{user}-",
                       PatternType.PREFIXED)
            for user in ("alice", "bob") for resource in (ResourceType.TOPIC, ResourceType.GROUP)]
    # alice may also write (not read) bob's inbox.
    acls.append(AclBinding("User:alice", AclOperation.WRITE, ResourceType.TOPIC, "bob-inbox"))
    broker = secure_broker(users={"alice": PASSWORD, "bob": PASSWORD}, acls=acls,
                           topics=("bob-orders", "bob-inbox", "alice-empty"),
                           **_sasl_ssl(certs))
    alice = _client(broker, **_sasl("alice", PASSWORD, "SCRAM-SHA-512", certs))
    bob = _client(broker, **_sasl("bob", PASSWORD, "SCRAM-SHA-512", certs))
    # WRITE on some topic implies IDEMPOTENT_WRITE (KIP-679): idempotence works.
    assert produce({**alice, "enable.idempotence": True}, "alice-orders", 4) == []
    assert consume(alice, "alice-orders", 4, group="alice-app") == [
        b"value-%d" % i for i in range(4)]
    assert produce(bob, "bob-orders", 2) == []
    denied = produce(alice, "bob-orders", 2)
    assert [e.code() for e in denied] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2
    assert broker.log.partition_log("bob-orders", 0).log_end_offset() == 2
    assert produce(alice, "bob-inbox", 1) == []
    [error] = consume(alice, "bob-inbox", 1, group="alice-app")
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    [error] = consume(alice, "alice-empty", 1, group="bob-app")
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_an_acl_added_while_serving_applies_to_the_next_request(secure_broker) -> None:
    broker = secure_broker(users={"alice": PASSWORD}, security_protocol="SASL_PLAINTEXT",
                           topics=("t",))
    alice = _client(broker, **_sasl("alice", PASSWORD, "PLAIN", None))
    assert produce(alice, "t", 1) == []
    broker.log.metadata.add_acls([AclBinding("User:bob", AclOperation.ALL,
                                             ResourceType.TOPIC, "t")])
    assert [e.code() for e in produce(alice, "t", 1)] == [
        KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_super_users_pass_every_acl(secure_broker) -> None:
    broker = secure_broker(users={"admin": PASSWORD}, security_protocol="SASL_PLAINTEXT",
                           super_users=("User:admin",),
                           acls=[AclBinding("User:*", AclOperation.ALL, ResourceType.TOPIC,
                                            "*", permission=AclPermission.DENY)])
    assert produce(_client(broker, **_sasl("admin", PASSWORD, "PLAIN", None)), "t", 1) == []


# --- the SASL protocol over raw frames ------------------------------------------------------


def _call(sock: socket.socket, wire: Any, api_key: int, version: int, body: Any,
          *, flexible_header: bool = False) -> Any:
    sock.sendall(wire.request_frame(api_key, version, 1, body))
    payload = wire.read_frame(sock)
    assert payload, "the broker closed the connection"
    return wire.decode_response(api_key, version, payload, flexible_header=flexible_header)


def _plain(user: str, password: str) -> bytes:
    return f"\0{user}\0{password}".encode()


def _connect(broker: SecureBroker) -> socket.socket:
    return socket.create_connection(("127.0.0.1", broker.port), timeout=10)


def test_nothing_but_api_versions_and_sasl_is_served_before_authentication(
        secure_broker, wire) -> None:
    broker = secure_broker(users={"alice": PASSWORD}, security_protocol="SASL_PLAINTEXT")
    sock = _connect(broker)
    versions = _call(sock, wire, ApiKey.API_VERSIONS, 3,
                     ApiVersionsV3(client_software_name="t", client_software_version="1"))
    served = {k.api_key: (k.min_version, k.max_version) for k in versions.api_keys}
    assert served[ApiKey.SASL_HANDSHAKE] == (0, 1)
    assert served[ApiKey.SASL_AUTHENTICATE] == (0, 2)
    sock.sendall(wire.request_frame(ApiKey.METADATA, 9, 2, MetadataV9(
        topics=None, allow_auto_topic_creation=False, include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False)))
    assert wire.read_frame(sock) == b""  # closed
    sock.close()


def test_sasl_handshake_then_authenticate_lets_requests_through(secure_broker, wire) -> None:
    broker = secure_broker(users={"alice": PASSWORD}, security_protocol="SASL_PLAINTEXT")
    sock = _connect(broker)
    handshake = _call(sock, wire, ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeV1(mechanism="PLAIN"))
    assert handshake.error_code == ErrorCode.none
    assert set(handshake.mechanisms) == {"SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"}
    answer = _call(sock, wire, ApiKey.SASL_AUTHENTICATE, 2,
                   SaslAuthenticateV2(auth_bytes=_plain("alice", PASSWORD)),
                   flexible_header=True)
    assert answer.error_code == ErrorCode.none and answer.error_message is None
    metadata = _call(sock, wire, ApiKey.METADATA, 9, MetadataV9(
        topics=None, allow_auto_topic_creation=False, include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False), flexible_header=True)
    assert len(metadata.brokers) == 1
    again = _call(sock, wire, ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeV1(mechanism="PLAIN"))
    assert again.error_code == ErrorCode.illegal_sasl_state
    sock.close()


def test_a_failed_sasl_authenticate_is_answered_then_the_connection_closed(
        secure_broker, wire) -> None:
    broker = secure_broker(users={"alice": PASSWORD}, security_protocol="SASL_PLAINTEXT")
    sock = _connect(broker)
    _call(sock, wire, ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeV1(mechanism="PLAIN"))
    answer = _call(sock, wire, ApiKey.SASL_AUTHENTICATE, 2,
                   SaslAuthenticateV2(auth_bytes=_plain("alice", "nope")), flexible_header=True)
    assert answer.error_code == ErrorCode.sasl_authentication_failed
    assert answer.error_message == ("Authentication failed during authentication due to "
                                    "invalid credentials with SASL mechanism PLAIN")
    assert wire.read_frame(sock) == b""
    assert broker.security.authentication_failures == 1
    sock.close()


def test_an_unsupported_mechanism_is_answered_with_the_enabled_ones_then_closed(
        secure_broker, wire) -> None:
    broker = secure_broker(security_protocol="SASL_PLAINTEXT", sasl_mechanisms=("PLAIN",))
    sock = _connect(broker)
    answer = _call(sock, wire, ApiKey.SASL_HANDSHAKE, 1,
                   SaslHandshakeV1(mechanism="SCRAM-SHA-256"))
    assert answer.error_code == ErrorCode.unsupported_sasl_mechanism
    assert answer.mechanisms == ("PLAIN",)
    assert wire.read_frame(sock) == b""
    sock.close()


def test_a_v0_handshake_authenticates_with_raw_tokens(secure_broker, wire) -> None:
    from kio.schema.sasl_handshake.v0.request import SaslHandshakeRequest as SaslHandshakeV0

    broker = secure_broker(users={"alice": PASSWORD}, security_protocol="SASL_PLAINTEXT")
    sock = _connect(broker)
    assert _call(sock, wire, ApiKey.SASL_HANDSHAKE, 0,
                 SaslHandshakeV0(mechanism="PLAIN")).error_code == ErrorCode.none
    token = _plain("alice", PASSWORD)
    sock.sendall(struct.pack(">i", len(token)) + token)
    assert sock.recv(4) == struct.pack(">i", 0)  # PLAIN's (empty) answer as a raw token
    metadata = _call(sock, wire, ApiKey.METADATA, 9, MetadataV9(
        topics=None, allow_auto_topic_creation=False, include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False), flexible_header=True)
    assert len(metadata.brokers) == 1
    sock.close()


def test_frames_before_authentication_are_limited_to_the_sasl_receive_size(
        secure_broker, wire) -> None:
    broker = secure_broker(security_protocol="SASL_PLAINTEXT", sasl_max_receive_bytes=4096)
    sock = _connect(broker)
    sock.sendall(struct.pack(">i", 4097))
    assert wire.read_frame(sock) == b""
    sock.close()


def test_sasl_requests_on_a_plaintext_listener_are_an_illegal_state(broker, wire) -> None:
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    answer = _call(sock, wire, ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeV1(mechanism="PLAIN"))
    assert answer.error_code == ErrorCode.illegal_sasl_state
    # The connection goes on serving.
    assert _call(sock, wire, ApiKey.API_VERSIONS, 3, ApiVersionsV3(
        client_software_name="t", client_software_version="1")).error_code == ErrorCode.none
    sock.close()


def test_tls_options_on_a_plaintext_listener_are_refused(certs) -> None:
    from logstore.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="does not use TLS"):
        BrokerConfig(tls_cert_path=certs.server_cert, tls_key_path=certs.server_key)
    with pytest.raises(InvalidArgumentError, match="needs tls_cert_path"):
        BrokerConfig(security_protocol="SASL_SSL")
    with pytest.raises(InvalidArgumentError, match="needs tls_client_ca_path"):
        BrokerConfig(**_tls(certs), tls_client_auth="required")


def test_tls_context_errors_name_the_file(tmp_path, certs) -> None:
    from logstore.errors import InvalidArgumentError

    with logstore.open(tmp_path / "d", maintenance_interval_ms=None) as log, \
            pytest.raises(InvalidArgumentError, match="cannot load the TLS certificate"):
        Broker(log, config=BrokerConfig(security_protocol="SSL", tls_cert_path=certs.ca,
                                        tls_key_path=certs.server_key))


def test_ssl_context_is_tls_1_2_or_newer(certs) -> None:
    from logstore.broker.auth.tls import server_context

    context = server_context(certs.server_cert, certs.server_key)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_distinguished_names_are_written_as_rfc_2253_most_specific_first() -> None:
    from logstore.broker.auth.tls import certificate_principal

    subject = ((("countryName", "US"),), (("organizationName", "Example, Inc."),),
               (("commonName", "alice"), ("userId", "a1")), (("emailAddress", "a@x.io"),),
               (("organizationalUnitName", " #ops "),), (("localityName", "#1"),))
    assert certificate_principal({"subject": subject}) == (
        "User:L=\\#1,OU=\\ #ops\\ ,1.2.840.113549.1.9.1=#16066140782e696f,CN=alice+UID=a1,"
        "O=Example\\, Inc.,C=US")
    assert certificate_principal({}) is None and certificate_principal(None) is None
