"""Creating, deleting and using one topic name at once, from threads and another process: every
failure a caller sees is a typed LogstoreError (no FileNotFoundError, FileExistsError or raw
SQLite error), and the topic is usable once the churn stops."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

import pytest

import logstore
from logstore.errors import LogstoreError

ROUNDS = 25

CHURNER = textwrap.dedent("""
    import sys, logstore
    data, rounds = sys.argv[1], int(sys.argv[2])
    unexpected = 0
    with logstore.open(data, maintenance_interval_ms=None, metadata_max_age_ms=0) as log:
        for i in range(rounds):
            for action in (lambda: log.create_topic("churn", partitions=2),
                           lambda: log.append("churn", i % 2, BATCH),
                           lambda: log.fetch("churn", 0, 0),
                           lambda: log.delete_topic("churn")):
                try:
                    action()
                except logstore.LogstoreError:
                    pass
                except Exception as exc:
                    unexpected += 1
                    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    print(unexpected)
""")


def test_churning_one_topic_name_raises_only_typed_errors(tmp_path: Path) -> None:
    from logstore.records.builder import encode_batch

    data = tmp_path / "data"
    batch = encode_batch([(1_700_000_000_000, b"k", b"v", ())])
    seen: Counter[str] = Counter()
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    other = subprocess.Popen(
        [sys.executable, "-c", f"BATCH = {batch!r}\n" + CHURNER, str(data), str(ROUNDS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    with logstore.open(data, maintenance_interval_ms=None, metadata_max_age_ms=0) as log:
        def run(action_name: str) -> None:
            for i in range(ROUNDS):
                try:
                    if action_name == "create":
                        log.create_topic("churn", partitions=2)
                    elif action_name == "delete":
                        log.delete_topic("churn")
                    elif action_name == "send":
                        with log.producer(linger_ms=0, delivery_timeout_ms=1000) as producer:
                            producer.send("churn", value=b"%d" % i, partition=i % 2).result(10)
                    elif action_name == "read":
                        log.fetch("churn", i % 2, 0)
                        log.describe_topic("churn")
                    with lock:
                        seen[f"{action_name}: ok"] += 1
                except LogstoreError as exc:
                    with lock:
                        seen[f"{action_name}: {type(exc).__name__}"] += 1
                except Exception as exc:
                    with lock:
                        unexpected.append(exc)

        threads = [threading.Thread(target=run, args=(name,))
                   for name in ("create", "delete", "send", "read")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        out, err = other.communicate(timeout=300)
        assert unexpected == [], [f"{type(e).__name__}: {e}" for e in unexpected]
        assert out.strip() == "0", err
        assert seen["create: ok"] > 0, seen  # the churn really happened
        # Afterwards the name works as usual.
        if "churn" in log.list_topics():
            log.delete_topic("churn")
        log.create_topic("churn", partitions=2)
        with log.producer() as producer:
            assert producer.send("churn", value=b"after", partition=0).result(10).offset == 0
        assert not any((data / "deleted").iterdir())


@pytest.fixture(autouse=True)
def _bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOGSTORE_DATA_DIR", raising=False)
