"""The broker: ``logstore serve``, and :class:`Broker` to start and stop one in-process.

One asyncio event loop serves the network (a thread of its own for an in-process broker, the
main thread for ``logstore serve``); storage and metadata calls, which block (SQLite commits,
fsyncs), run on a thread pool (``BrokerServices.run``), so one slow partition never stalls the
others. The broker serves the same data directory and metadata store that embedded processes
use, at the same time.

Long polls: a fetch that finds less than ``min_bytes`` waits on :class:`AppendWaiters` until a
partition it reads is rung (appended to, by this broker or by any process sharing the
directory: the Log's notifier sees both) or ``max_wait_ms`` passes. A bridge thread turns the
notifier's wake-ups into event-loop callbacks.

Shutdown (``stop()``, SIGTERM/SIGINT for ``logstore serve``): stop accepting, let every
connection finish the requests it has queued, close them, then close the log if the broker
opened it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from logstore.backends.broker_records import DEFAULT_BROKER_SESSION_TIMEOUT_MS, RACK_MAX_LENGTH
from logstore.backends.security_records import check_principal
from logstore.broker.auth import SASL_MECHANISMS, BrokerSecurity, SecurityProtocol
from logstore.broker.auth.tls import CLIENT_AUTH_MODES
from logstore.broker.connection import Connection
from logstore.broker.dispatch import Dispatcher
from logstore.broker.metrics import BrokerMetrics
from logstore.broker.metrics_http import MetricsEndpoint, registry_for, validate_listen
from logstore.broker.registration import RegistrationKeeper
from logstore.errors import InvalidArgumentError, StorageError

if TYPE_CHECKING:
    from logstore.embedded import Log

_log = logging.getLogger("logstore.broker")

T = TypeVar("T")

DEFAULT_PORT = 9092
#: Storage threads: appends block in group commits (more threads, bigger groups).
DEFAULT_IO_THREADS = 16


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """A broker's settings (Kafka's names in the docstrings)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = DEFAULT_PORT
    advertised_host: str | None = None
    """What clients are told to connect to (``advertised.listeners``); default: the listen
    address (and the bound port when listening on port 0)."""
    advertised_port: int | None = None
    broker_id: int = 0
    """``node.id``."""
    rack: str | None = None
    max_request_bytes: int = 100 * 1024 * 1024
    """``socket.request.max.bytes``."""
    max_connections: int = 10_000
    """``max.connections``."""
    idle_timeout_ms: int = 600_000
    """``connections.max.idle.ms``."""
    auto_create_topics: bool = True
    """``auto.create.topics.enable``."""
    num_partitions: int = 1
    """``num.partitions``: of topics created automatically."""
    io_threads: int = DEFAULT_IO_THREADS
    metrics_listen: tuple[str, int] | None = None
    """(host, port) of the Prometheus endpoint (``--metrics-listen``); None: no endpoint."""
    security_protocol: str = "PLAINTEXT"
    """The listener's security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (the role
    of ``listener.security.protocol.map``; see ``logstore.broker.auth.security``)."""
    tls_cert_path: str | None = None
    """PEM server certificate chain (``ssl.keystore.location``); SSL and SASL_SSL need it."""
    tls_key_path: str | None = None
    """PEM private key of the certificate."""
    tls_key_password: str | None = field(default=None, repr=False)
    """Password of an encrypted key (``ssl.key.password``)."""
    tls_client_ca_path: str | None = None
    """PEM CA certificates that sign clients' certificates (``ssl.truststore.location``)."""
    tls_client_auth: str = "none"
    """``ssl.client.auth``: none, requested or required (needs ``tls_client_ca_path``)."""
    sasl_mechanisms: tuple[str, ...] = SASL_MECHANISMS
    """``sasl.enabled.mechanisms``: of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN."""
    sasl_max_receive_bytes: int = 512 * 1024
    """``sasl.server.max.receive.size``: the frame limit before authentication."""
    super_users: tuple[str, ...] = ()
    """``super.users``: principals (``User:admin``) that every ACL check allows."""
    allow_everyone_if_no_acl_found: bool = False
    """``allow.everyone.if.no.acl.found``: allow resources no ACL names (once any ACL
    exists; with no ACL at all everything is allowed, see ``logstore.broker.auth.authorizer``)."""
    acl_max_age_ms: int = 1000
    """How long the ACLs read from the metadata store are used before reading them again."""
    session_timeout_ms: int = DEFAULT_BROKER_SESSION_TIMEOUT_MS
    """``broker.session.timeout.ms``: a broker that has not renewed its registration for this
    long (the metadata store's clock) is dead."""

    def __post_init__(self) -> None:
        for name in ("listen_port", "max_request_bytes", "max_connections", "idle_timeout_ms",
                     "num_partitions", "io_threads", "broker_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be a non-negative int, got {value!r}")
        if self.rack is not None and (not isinstance(self.rack, str)
                                      or not 0 < len(self.rack) <= RACK_MAX_LENGTH):
            raise InvalidArgumentError(f"rack must be 1 to {RACK_MAX_LENGTH} characters, got "
                                       f"{self.rack!r}")
        if isinstance(self.session_timeout_ms, bool) or not isinstance(
                self.session_timeout_ms, int) or self.session_timeout_ms < 1:
            raise InvalidArgumentError(f"session_timeout_ms must be a positive int, got "
                                       f"{self.session_timeout_ms!r}")
        if self.num_partitions < 1 or self.io_threads < 1 or self.max_request_bytes < 1024:
            raise InvalidArgumentError("num_partitions and io_threads must be at least 1, "
                                       "max_request_bytes at least 1024")
        self._check_security()
        validate_listen(self.metrics_listen)

    def _check_security(self) -> None:
        for name in ("sasl_max_receive_bytes", "acl_max_age_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be a non-negative int, got {value!r}")
        names = ", ".join(p.value for p in SecurityProtocol)
        if self.security_protocol not in {p.value for p in SecurityProtocol}:
            raise InvalidArgumentError(f"security_protocol must be one of {names}, got "
                                       f"{self.security_protocol!r}")
        protocol = SecurityProtocol(self.security_protocol)
        tls_options = {"tls_cert_path": self.tls_cert_path, "tls_key_path": self.tls_key_path,
                       "tls_client_ca_path": self.tls_client_ca_path}
        if protocol.uses_tls:
            if not self.tls_cert_path or not self.tls_key_path:
                raise InvalidArgumentError(f"a {protocol.value} listener needs "
                                           "tls_cert_path and tls_key_path")
        elif any(tls_options.values()) or self.tls_client_auth != "none":
            given = [name for name, value in tls_options.items() if value]
            raise InvalidArgumentError(
                f"{', '.join(given) or 'tls_client_auth'} given for a {protocol.value} "
                "listener, which does not use TLS (security_protocol SSL or SASL_SSL does)")
        if self.tls_client_auth not in CLIENT_AUTH_MODES:
            raise InvalidArgumentError(f"tls_client_auth must be one of "
                                       f"{', '.join(CLIENT_AUTH_MODES)}, got "
                                       f"{self.tls_client_auth!r}")
        if self.tls_client_auth != "none" and not self.tls_client_ca_path:
            raise InvalidArgumentError(f"tls_client_auth {self.tls_client_auth!r} needs "
                                       "tls_client_ca_path")
        mechanisms = self.sasl_mechanisms
        if (not isinstance(mechanisms, tuple) or not mechanisms
                or any(m not in SASL_MECHANISMS for m in mechanisms)):
            raise InvalidArgumentError(f"sasl_mechanisms must be a non-empty tuple of "
                                       f"{', '.join(SASL_MECHANISMS)}, got {mechanisms!r}")
        if not isinstance(self.super_users, tuple):
            raise InvalidArgumentError(f"super_users must be a tuple of principals, got "
                                       f"{self.super_users!r}")
        for principal in self.super_users:
            check_principal(principal)


class ConnectionRegistry:
    """The open connections (bounded by ``max_connections``)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._connections: set[Connection] = set()

    def add(self, connection: Connection) -> bool:
        if len(self._connections) >= self._limit:
            return False
        self._connections.add(connection)
        return True

    def remove(self, connection: Connection) -> None:
        self._connections.discard(connection)

    def __len__(self) -> int:
        return len(self._connections)

    def all(self) -> list[Connection]:
        return list(self._connections)


class AppendWaiters:
    """Fetches waiting for appends. Lives on the event loop; :meth:`wake` is called there by
    the bridge thread (``call_soon_threadsafe``) whenever the notifier's sequence moves."""

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def register(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.add(event)
        return event

    def unregister(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    def wake(self) -> None:
        for event in self._events:
            event.set()


class BrokerServices:
    """What handlers use: the log, the settings, the storage threads, the waiters, the
    listener's security (``security``: TLS context, sessions, the authorizer)."""

    def __init__(self, log: Log, config: BrokerConfig, dispatcher: Dispatcher,
                 metrics: BrokerMetrics) -> None:
        self.log = log
        self.config = config
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.connections = ConnectionRegistry(config.max_connections)
        self.waiters = AppendWaiters()
        self.executor = ThreadPoolExecutor(max_workers=config.io_threads,
                                           thread_name_prefix="logstore-broker-io")
        self.advertised: tuple[str, int] = (config.listen_host, config.listen_port)
        self.cluster_id = cluster_id_of(log)
        self.security = BrokerSecurity(config, log.metadata, self.run)
        self._watched: set[Path] = set()
        self._watched_lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def watch(self, doorbell: Path) -> None:
        """Have the Log's notifier report appends to this partition by other processes (once
        per partition; from any thread)."""
        with self._watched_lock:
            if doorbell in self._watched:
                return
            self._watched.add(doorbell)
        self.log.notifier.watch(doorbell)


def cluster_id_of(log: Log) -> str:
    """A stable id for the cluster this data directory and metadata store form (Kafka's
    ``cluster.id``: 22 characters of URL-safe base64 of a UUID), kept in the metadata store."""
    return log.metadata.cluster_id(lambda: _kafka_uuid())


def _kafka_uuid() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


class Broker:
    """A Kafka-protocol broker over a :class:`~logstore.Log` (see the module docstring).

    ``Broker(log_or_path, config=BrokerConfig(...))``; ``start()`` serves in a background
    thread and returns once listening (``address`` is then the bound address), ``stop()``
    shuts down cleanly; or ``run()`` serves on the calling thread until ``stop()`` or a signal
    handler stops it. A broker given a path opens (and at stop, closes) the log itself.
    Thread-safe: ``start``/``stop`` from any thread.
    """

    def __init__(self, log: Log | str | Path, *, config: BrokerConfig | None = None,
                 **log_options: Any) -> None:
        from logstore.broker.handlers import register_all
        from logstore.embedded import Log as LogType
        from logstore.embedded import open as open_log

        self.config = config or BrokerConfig()
        self._owns_log = not isinstance(log, LogType)
        self.log = log if isinstance(log, LogType) else open_log(log, **log_options)
        try:
            self.dispatcher = Dispatcher()
            register_all(self.dispatcher)
            self.metrics = BrokerMetrics()
            self.services = BrokerServices(self.log, self.config, self.dispatcher, self.metrics)
        except BaseException:
            if self._owns_log:
                self.log.close()
            raise
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._handle_signals = False
        self.address: tuple[str, int] | None = None
        self.metrics_address: tuple[str, int] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Serve in a background thread; return once listening (or raise why not)."""
        self._thread = threading.Thread(target=self.run, name="logstore-broker", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error

    def run(self, *, handle_signals: bool = False) -> None:
        """Serve on this thread until :meth:`stop` (``logstore serve`` uses this, with
        ``handle_signals``: SIGTERM and SIGINT stop the broker cleanly)."""
        self._handle_signals = handle_signals
        try:
            asyncio.run(self._main())
        finally:
            self._started.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, finish queued requests, close connections (and the log, if the
        broker opened it). Idempotent."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass  # the loop finished meanwhile
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _on_signal(self, signum: int) -> None:
        _log.info("received %s: stopping", signal.Signals(signum).name)
        self.request_stop()

    def request_stop(self) -> None:
        """Ask a running broker to stop (safe from signal handlers on the loop's thread)."""
        if self._stopping is not None:
            self._stopping.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if self._handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._on_signal, signum)
        bridge_stop = threading.Event()
        bridge: threading.Thread | None = None
        metrics: MetricsEndpoint | None = None
        try:
            if self.config.metrics_listen is not None:
                metrics = MetricsEndpoint.start(registry_for(self.services),
                                                *self.config.metrics_listen)
                self.metrics_address = metrics.address
            try:
                self._server = await self._loop.create_server(
                    lambda: Connection(self.services), self.config.listen_host,
                    self.config.listen_port, reuse_address=True)
            except OSError as exc:
                raise StorageError(
                    f"cannot listen on {self.config.listen_host}:{self.config.listen_port}: "
                    f"{exc.strerror or exc}") from exc
            sockname = self._server.sockets[0].getsockname()
            self.address = (sockname[0], sockname[1])
            self.services.advertised = (
                self.config.advertised_host or self.config.listen_host,
                self.config.advertised_port or self.address[1])
            bridge = threading.Thread(target=self._bridge, args=(self._loop, bridge_stop),
                                      name="logstore-broker-notifier", daemon=True)
            bridge.start()
            _log.info("broker %d listening on %s:%d (advertised %s:%d)", self.config.broker_id,
                      self.address[0], self.address[1], *self.services.advertised)
            self._started.set()
            idle_task = asyncio.get_running_loop().create_task(self._close_idle())
            keeper = RegistrationKeeper(
                self.log.metadata, self.services.run, broker_id=self.config.broker_id,
                rack=self.config.rack, session_timeout_ms=self.config.session_timeout_ms)
            registered = asyncio.get_running_loop().create_task(
                keeper.keep(self.services.advertised, self._stopping))
            await self._stopping.wait()
            idle_task.cancel()
            await self._shutdown()
            await asyncio.wait([registered], timeout=30)  # it unregisters
        except BaseException as exc:
            self._start_error = exc
            raise
        finally:
            if metrics is not None:
                metrics.stop()
            bridge_stop.set()
            if bridge is not None:
                bridge.join(timeout=5)
            self.services.executor.shutdown(wait=True)
            if self._owns_log:
                self.log.close()
            self._started.set()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        connections = self.services.connections.all()
        if connections:
            await asyncio.wait([asyncio.ensure_future(c.drain_and_close()) for c in connections],
                               timeout=30)
        if self._server is not None:
            await self._server.wait_closed()
        _log.info("broker %d stopped", self.config.broker_id)

    async def _close_idle(self) -> None:
        idle_s = self.config.idle_timeout_ms / 1000
        while True:
            await asyncio.sleep(min(idle_s / 2, 10) or 1)
            for connection in self.services.connections.all():
                connection.close_if_idle(idle_s)

    def _bridge(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """Turn the notifier's wake-ups (appends here or in other processes) into calls of
        ``AppendWaiters.wake`` on the event loop."""
        notifier = self.log.notifier
        sequence = notifier.sequence()
        while not stop.is_set():
            notifier.wait(sequence, 0.5)
            current = notifier.sequence()
            if current != sequence:
                sequence = current
                try:
                    loop.call_soon_threadsafe(self.services.waiters.wake)
                except RuntimeError:
                    return  # the loop is closed

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
