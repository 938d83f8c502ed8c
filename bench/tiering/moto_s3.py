"""S3 over moto: a ``ThreadedMotoServer`` (in a process of its own, or in this one), the bucket,
and ``S3ObjectStore`` clients of it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

S3_REGION = "us-east-1"
BUCKET = "logstore-bench"

_MOTO_CHILD = """
import logging
import sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(host, port, flush=True)
sys.stdin.read()  # until the parent closes our stdin
server.stop()
"""


def _fake_aws_environment() -> None:
    """Fake credentials for moto, and no reading of the user's ~/.aws files (as the tests)."""
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": S3_REGION,
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    })
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)


@contextmanager
def moto_server(in_process: bool) -> Iterator[tuple[str, int | None]]:
    """(endpoint URL, pid of the server process or None when it runs in this one)."""
    _fake_aws_environment()
    if in_process:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}", None
        finally:
            server.stop()
        return
    child = subprocess.Popen([sys.executable, "-c", _MOTO_CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if len(line) != 2:
            raise RuntimeError("the moto server did not start")
        yield f"http://{line[0]}:{line[1]}", child.pid
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def s3_store(endpoint: str) -> Any:
    from logstore.backends.s3_store import S3ObjectStore

    return S3ObjectStore(BUCKET, "bench", endpoint_url=endpoint, region=S3_REGION,
                         addressing_style="path")


def create_bucket(endpoint: str) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3", region_name=S3_REGION, endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    client.close()
