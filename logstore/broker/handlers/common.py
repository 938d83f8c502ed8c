"""What handlers share: error codes for exceptions, and partition lookups."""

from __future__ import annotations

import logging

from logstore.errors import LogstoreError

_log = logging.getLogger("logstore.broker")

#: UNKNOWN_SERVER_ERROR
UNKNOWN_SERVER_ERROR = -1
#: Kafka's "not requested" value of authorized-operations fields.
AUTHORIZED_OPERATIONS_OMITTED = -2147483648


def error_code(exc: BaseException) -> int:
    """The Kafka error code to answer with for an exception a handler caught."""
    if isinstance(exc, LogstoreError):
        return exc.error_code
    _log.error("unexpected error answering a request", exc_info=exc)
    return UNKNOWN_SERVER_ERROR


def error_message(exc: BaseException) -> str | None:
    """The message to send along (v8+ produce responses and others); None for bugs."""
    return str(exc) if isinstance(exc, LogstoreError) else None
