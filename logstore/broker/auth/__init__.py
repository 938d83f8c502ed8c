"""The broker's security: TLS, SASL (PLAIN, SCRAM-SHA-256/512) and ACLs.

* ``security`` — the listener's security protocol, per-connection sessions, logging.
* ``tls`` — the server's TLS context; principals from client certificates.
* ``sasl`` and ``scram`` — the SASL handshake and mechanisms, credentials.
* ``authorizer`` — the ACL decisions handlers ask for with ``await ctx.authorize(...)``.

Users (SCRAM credentials) and ACLs live in the metadata store
(``logstore.backends.security_records``); ``logstore users`` and ``logstore acls`` manage them.
"""

from logstore.backends.security_records import (
    CLUSTER_RESOURCE_NAME,
    AclBinding,
    AclFilter,
    AclOperation,
    AclPermission,
    PatternType,
    ResourceType,
    ScramMechanism,
)
from logstore.broker.auth.authorizer import Authorizer
from logstore.broker.auth.sasl import SASL_MECHANISMS
from logstore.broker.auth.scram import make_credential, verify_password
from logstore.broker.auth.security import ANONYMOUS, BrokerSecurity, SecurityProtocol, Session

__all__ = [
    "ANONYMOUS",
    "CLUSTER_RESOURCE_NAME",
    "SASL_MECHANISMS",
    "AclBinding",
    "AclFilter",
    "AclOperation",
    "AclPermission",
    "Authorizer",
    "BrokerSecurity",
    "PatternType",
    "ResourceType",
    "ScramMechanism",
    "SecurityProtocol",
    "Session",
    "make_credential",
    "verify_password",
]
