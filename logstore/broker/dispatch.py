"""From a request frame to response chunks: the API table, version checks, decoding, handlers.

Handlers are coroutines ``handler(ctx, request) -> response`` registered per API key with the
versions they serve; the table they form is what ApiVersions advertises, so the two cannot
disagree. A response is a kio entity (encoded here) or :class:`RawResponse` (already encoded
chunks, for fetches: their record batches are sent as stored), or None (a produce with
``acks=0`` gets no answer).

A request for an API or version the broker does not serve: ApiVersions is answered in its v0
form with UNSUPPORTED_VERSION and the ranges (KIP-511's rule, so any client can pick a version);
anything else closes the connection, as Kafka does. So do frames that do not parse.

Thread-safety: runs on the broker's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kio.schema.api_versions.v0.response import ApiVersion as ApiVersionV0
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.errors import ErrorCode

from logstore.broker.entities import build, build_in, response_module
from logstore.protocol.apis import ApiKey, VersionRange
from logstore.protocol.codec import decode_request, encode_response, is_flexible
from logstore.protocol.frames import (
    FrameError,
    parse_request_header,
    read_fixed,
    response_header,
)

if TYPE_CHECKING:
    from logstore.backends.security_records import AclOperation, ResourceType
    from logstore.broker.auth.security import Session
    from logstore.broker.server import BrokerServices

_log = logging.getLogger("logstore.broker")

API_VERSIONS_RANGE = VersionRange(0, 3)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A response body already encoded, as chunks to send in order."""

    chunks: list[bytes]
    size: int


@dataclass(slots=True)
class RequestContext:
    """What a handler knows about the request it serves: the connection's ``principal``
    (``User:ANONYMOUS`` until authenticated) and ``session`` (its SASL state, see
    ``logstore.broker.auth.security``)."""

    services: BrokerServices
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str
    principal: str = "User:ANONYMOUS"
    extra: dict[str, Any] = field(default_factory=dict)
    session: Session | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking call (storage, the metadata store) off the event loop."""
        return await self.services.run(fn, *args)

    @property
    def host(self) -> str:
        """The client's IP address (what ACL hosts match)."""
        if self.session is not None:
            return self.session.host
        return self.peer.rpartition(":")[0] or self.peer

    async def authorize(self, resource_type: ResourceType, name: str,
                        operation: AclOperation) -> bool:
        """May this request's principal do ``operation`` on the resource (by the ACLs; see
        ``logstore.broker.auth.authorizer``)? Cheap: the ACLs are cached; with none at all,
        always True."""
        return await self.services.security.authorizer.authorize(
            self.services.run, self.principal, self.host, resource_type, name, operation)

    async def authorize_any(self, resource_type: ResourceType, operation: AclOperation) -> bool:
        """May this request's principal do ``operation`` on some resource of the type (e.g.
        WRITE on some topic, which implies IDEMPOTENT_WRITE on the cluster)?"""
        return await self.services.security.authorizer.authorize_any(
            self.services.run, self.principal, self.host, resource_type, operation)


Handler = Callable[[RequestContext, Any], Awaitable[Any]]


class Dispatcher:
    """The API table and request dispatch."""

    def __init__(self) -> None:
        self._handlers: dict[int, tuple[VersionRange, Handler]] = {}

    def register(self, api_key: ApiKey, versions: VersionRange, handler: Handler) -> None:
        self._handlers[int(api_key)] = (versions, handler)

    def supported(self) -> dict[int, VersionRange]:
        """API key -> the versions served (ApiVersions included)."""
        table = {key: versions for key, (versions, _) in self._handlers.items()}
        table[int(ApiKey.API_VERSIONS)] = API_VERSIONS_RANGE
        return dict(sorted(table.items()))

    async def dispatch(
        self, frame: bytes, context: Callable[[int, int, int, str | None], RequestContext]
    ) -> tuple[list[bytes], int] | None:
        """The response frame's chunks and size for one request frame (None: no response).
        Raises FrameError to close the connection."""
        api_key, api_version, correlation_id = read_fixed(frame)
        if api_key == ApiKey.API_VERSIONS:
            if api_version not in API_VERSIONS_RANGE:
                return self._frame(correlation_id, False, self._unsupported_api_versions())
            header = parse_request_header(frame, flexible=api_version >= 3)
            decode_request(api_key, api_version, frame, header.body_offset)
            body = self._api_versions(api_version)
            # ApiVersions responses always use header v0 (so any client can read them).
            return self._frame(correlation_id, False, encode_response(api_key, api_version,
                                                                      body))
        entry = self._handlers.get(api_key)
        if entry is None or api_version not in entry[0]:
            raise FrameError(f"API {api_key} version {api_version} is not supported "
                             f"(see ApiVersions)")
        flexible = is_flexible(api_key, api_version)
        header = parse_request_header(frame, flexible=flexible)
        request = decode_request(api_key, api_version, frame, header.body_offset)
        ctx = context(api_key, api_version, correlation_id, header.client_id)
        response = await entry[1](ctx, request)
        if response is None:
            return None
        if isinstance(response, RawResponse):
            head = response_header(correlation_id, flexible=flexible)
            return [head, *response.chunks], len(head) + response.size
        return self._frame(correlation_id, flexible,
                           encode_response(api_key, api_version, response))

    @staticmethod
    def _frame(correlation_id: int, flexible: bool, body: bytes) -> tuple[list[bytes], int]:
        head = response_header(correlation_id, flexible=flexible)
        return [head, body], len(head) + len(body)

    def _api_versions(self, api_version: int) -> Any:
        module = response_module(ApiKey.API_VERSIONS, api_version)
        keys = tuple(
            build_in(module, "ApiVersion", api_key=key, min_version=r.min_version,
                     max_version=r.max_version)
            for key, r in self.supported().items())
        return build(module.ApiVersionsResponse, error_code=0, api_keys=keys,
                     throttle_time_ms=0)

    def _unsupported_api_versions(self) -> bytes:
        body = ApiVersionsResponseV0(
            error_code=ErrorCode.unsupported_version,
            api_keys=tuple(ApiVersionV0(api_key=key, min_version=r.min_version,
                                        max_version=r.max_version)
                           for key, r in self.supported().items()))
        return encode_response(ApiKey.API_VERSIONS, 0, body)
