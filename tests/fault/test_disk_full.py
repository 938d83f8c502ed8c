"""A full disk: the write fails with DiskFullError naming the file, nothing acknowledged is lost,
and appends go on (with the next offset) once there is space again. Runs on a small tmpfs, so it
needs root (it skips, saying so, otherwise)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import logstore
from logstore import TopicPartition
from logstore.errors import DiskFullError


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_reported_as_such_and_loses_nothing(small_disk: Path) -> None:
    acknowledged: list[int] = []
    with logstore.open(small_disk / "data", maintenance_interval_ms=None) as log:
        log.create_topic("t", config={"segment.bytes": "300000"})
        with (pytest.raises(DiskFullError) as caught,
              log.producer(linger_ms=0, delivery_timeout_ms=1000) as producer):
            for _ in range(10_000):
                acknowledged.append(
                    producer.send("t", value=os.urandom(1000), partition=0).result(10).offset)
        assert "disk full" in str(caught.value)
        assert str(small_disk / "data") in str(caught.value)  # it names the file
        assert caught.value.retriable is False
        assert acknowledged == list(range(len(acknowledged))) and len(acknowledged) > 100
        subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
        with log.producer(linger_ms=0) as producer:
            after = producer.send("t", value=b"after", partition=0).result(10).offset
        with log.consumer(auto_offset_reset="earliest") as consumer:
            consumer.assign([TopicPartition("t", 0)])
            read: list[int] = []
            while len(read) < len(acknowledged) + 1:
                records = consumer.poll(timeout_ms=2000)
                assert records, f"stopped after {len(read)} records"
                read.extend(r.offset for r in records)
    assert read[:len(acknowledged)] == acknowledged  # every acknowledged record is there
    assert after == read[-1] > acknowledged[-1]  # and no offset was handed out twice
