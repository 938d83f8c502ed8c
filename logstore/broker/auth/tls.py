"""TLS for the broker's listener: the server context, and principals from client certificates.

:func:`server_context` builds the ``ssl.SSLContext`` of an SSL or SASL_SSL listener: the
server certificate chain and key (PEM; Kafka's ``ssl.keystore.*``), TLS 1.2 or newer, and, for
client-certificate authentication (``ssl.client.auth``), the CA bundle clients' certificates
must chain to (``ssl.truststore.*``): ``required`` refuses a client without a valid
certificate, ``requested`` accepts one without (its principal is then ``User:ANONYMOUS``).

:func:`certificate_principal` is Kafka's DEFAULT ``ssl.principal.mapping.rules``: ``User:``
and the subject's distinguished name in RFC 2253 form, most specific RDN first
(``User:CN=alice,OU=eng,O=Example,C=US``). Attribute types RFC 2253 names are written by
keyword (CN, L, ST, O, OU, C, STREET, DC, UID), the e-mail address as its OID with the
DER-encoded value in hex (as Java writes it), any other by the name Python's ``ssl`` gives it.

Pure functions; the context they build is shared by every connection (``ssl`` contexts are
thread-safe to use).
"""

from __future__ import annotations

import ssl
from typing import Any

from logstore.errors import InvalidArgumentError

CLIENT_AUTH_MODES = ("none", "requested", "required")

_RFC2253_KEYWORDS = {
    "commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST",
    "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
    "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID",
}
_EMAIL_OID = "1.2.840.113549.1.9.1"
_SPECIAL = ',+"\\<>;'


def server_context(cert_path: str, key_path: str, *, key_password: str | None = None,
                   client_ca_path: str | None = None,
                   client_auth: str = "none") -> ssl.SSLContext:
    """The TLS context of a listener (see the module docstring). Raises InvalidArgumentError
    naming the file that cannot be used."""
    if client_auth not in CLIENT_AUTH_MODES:
        raise InvalidArgumentError(f"TLS client auth must be one of "
                                   f"{', '.join(CLIENT_AUTH_MODES)}, got {client_auth!r}")
    if client_auth != "none" and not client_ca_path:
        raise InvalidArgumentError(f"TLS client auth {client_auth!r} needs the CA "
                                   "certificates that sign clients' certificates")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path, password=key_password)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgumentError(f"cannot load the TLS certificate {cert_path} with key "
                                   f"{key_path}: {_reason(exc)}") from None
    if client_ca_path:
        try:
            context.load_verify_locations(cafile=client_ca_path)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgumentError(f"cannot load the client CA certificates "
                                       f"{client_ca_path}: {_reason(exc)}") from None
    context.verify_mode = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL,
                           "required": ssl.CERT_REQUIRED}[client_auth]
    return context


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)


def certificate_principal(peercert: dict[str, Any] | None) -> str | None:
    """``User:<subject DN>`` of a verified client certificate (``getpeercert()``), or None
    when the client sent none."""
    if not peercert or not peercert.get("subject"):
        return None
    return "User:" + distinguished_name(peercert["subject"])


def distinguished_name(subject: tuple[tuple[tuple[str, str], ...], ...]) -> str:
    """RFC 2253 form of a subject as ``ssl`` gives it (RDNs in certificate order)."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(_attribute(name, value) for name, value in rdn))
    return ",".join(rdns)


def _attribute(name: str, value: str) -> str:
    if name == "emailAddress":
        data = value.encode("ascii", "replace")
        return f"{_EMAIL_OID}=#16{len(data):02x}{data.hex()}" if len(data) < 128 else (
            f"{_EMAIL_OID}={_escape(value)}")
    return f"{_RFC2253_KEYWORDS.get(name, name)}={_escape(value)}"


def _escape(value: str) -> str:
    """RFC 2253 escaping: the special characters, a leading ``#`` or space, a trailing space."""
    out = "".join(f"\\{c}" if c in _SPECIAL else c for c in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
