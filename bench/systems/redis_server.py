"""The Redis server the benchmark uses, with append-only-file persistence as it asks.

If ``redis-server`` is on PATH the benchmark starts its own instance: a free port on
127.0.0.1, a temporary directory, ``--save ""`` (no RDB snapshots), ``--appendonly yes``,
the wanted ``--appendfsync``, and automatic AOF rewrites off (the benchmark rewrites the AOF
itself between runs, outside the measurements, so the file stays small). Otherwise it uses the
server at ``fallback_url`` and configures it with ``CONFIG SET`` (appendonly, appendfsync),
restoring the previous values when it stops; the AOF files Redis wrote stay in that server's
directory (``appendonlydir``), which the benchmark cannot reach in general.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.systems import SystemUnavailable

START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A Redis server with AOF persistence at ``appendfsync`` (``always`` or ``everysec``)."""

    def __init__(self, appendfsync: str, base_dir: Path | None,
                 fallback_url: str = "redis://127.0.0.1:6379") -> None:
        self.appendfsync = appendfsync
        self._base_dir = base_dir
        self._fallback_url = fallback_url
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._restore: dict[str, str] = {}
        self.client: Any = None
        self._connection: dict[str, Any] = {}
        self.pid: int | None = None
        self.description = ""

    def start(self) -> None:
        try:
            import redis
        except ImportError:
            raise SystemUnavailable("the client library redis-py is not installed") from None
        binary = shutil.which("redis-server")
        if binary:
            self._start_own(binary, redis)
        else:
            self._use_existing(redis)

    def _start_own(self, binary: str, redis: Any) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="bench-redis-", dir=self._base_dir))
        port = _free_port()
        self._process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self._dir),
             "--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync,
             "--auto-aof-rewrite-percentage", "0", "--logfile", str(self._dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.pid = self._process.pid
        self._connection = {"host": "127.0.0.1", "port": port}
        self.client = self.connect()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemUnavailable(f"{binary} did not start (see its log)") from None
                time.sleep(0.05)
        version = self.client.info("server")["redis_version"]
        self.description = (
            f"own redis-server {version} (127.0.0.1:{port}, temp dir): appendonly yes, "
            f"appendfsync {self.appendfsync}, no RDB snapshots"
        )

    def _use_existing(self, redis: Any) -> None:
        self._connection = redis.connection.parse_url(self._fallback_url)
        self.client = self.connect()
        try:
            self.client.ping()
        except redis.ConnectionError as exc:
            raise SystemUnavailable(
                f"redis-server is not on PATH and {self._fallback_url} is unreachable ({exc})"
            ) from None
        self._restore = {
            key: str(self.client.config_get(key)[key]) for key in ("appendonly", "appendfsync")
        }
        self.client.config_set("appendfsync", self.appendfsync)
        self.client.config_set("appendonly", "yes")
        self.wait_for_rewrite()
        info = self.client.info("server")
        pid = int(info["process_id"])
        self.pid = pid if Path(f"/proc/{pid}").exists() else None
        self.description = (
            f"existing redis-server {info['redis_version']} at {self._fallback_url}, set by "
            f"CONFIG SET to appendonly yes, appendfsync {self.appendfsync} (restored after)"
        )

    def connect(self) -> Any:
        """A new client (own connection) of this server."""
        import redis

        return redis.Redis(**self._connection)

    def wait_for_rewrite(self) -> None:
        """Wait until no AOF rewrite is in progress."""
        while True:
            persistence = self.client.info("persistence")
            if not (persistence.get("aof_rewrite_in_progress")
                    or persistence.get("aof_rewrite_scheduled")):
                return
            time.sleep(0.05)

    def compact(self) -> None:
        """Rewrite the AOF (after deleting a run's keys, so it becomes small again) and wait."""
        self.wait_for_rewrite()
        self.client.bgrewriteaof()
        time.sleep(0.05)
        self.wait_for_rewrite()

    def stop(self) -> None:
        if self._restore and self.client is not None:
            self.client.config_set("appendfsync", self._restore["appendfsync"])
            self.client.config_set("appendonly", self._restore["appendonly"])
            self._restore = {}
        if self.client is not None:
            self.client.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
