"""Consumer groups across real OS processes, killed, paused, joining and leaving.

Workers (tests/workers/group_member.py) print every assignment, revocation, processed record
and commit with a time.monotonic() stamp (system-wide on Linux), so the test can check, across
processes, that a partition never has two owners at once, that every record is processed, and
that duplicates come only from work a killed member did after its last commit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

import logstore
from tests.support.member_process import MemberProcess

WORKER = Path(__file__).resolve().parent.parent / "workers" / "group_member.py"
SESSION_MS = 3000
PARTITIONS = 6


class Member(MemberProcess):
    """A ``group_member.py`` process."""

    def records(self) -> list[tuple[float, int, int, str]]:
        return [(float(t), int(p), int(o), v) for _, t, p, o, v in self.events("R")]


@pytest.fixture(params=["sqlite", "postgresql"])
def metadata_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgresql_url") if request.param == "postgresql" else None


@pytest.fixture
def start(tmp_path: Path, metadata_url: str | None) -> Iterator:  # type: ignore[type-arg]
    members: list[Member] = []

    def start_member(name: str, *, strategy: str = "range", instance: str | None = None,
                     group: str = "g", process_ms: int = 0) -> Member:
        command = [sys.executable, str(WORKER), str(tmp_path / "data"), "t", group, name,
                   "--strategy", strategy, "--session-ms", str(SESSION_MS),
                   "--process-ms", str(process_ms)]
        if instance:
            command += ["--instance", instance]
        if metadata_url:
            command += ["--metadata-url", metadata_url]
        proc = subprocess.Popen(command, cwd=tmp_path, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        member = Member(name, proc)
        wait_for(lambda: "ready" in member.lines, f"{name} to start", 60)
        members.append(member)
        return member

    yield start_member
    for member in members:
        if member.proc.poll() is None:
            member.proc.kill()
            member.proc.wait()


def wait_for(condition, what: str, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def open_log(tmp_path: Path, metadata_url: str | None) -> logstore.Log:
    return logstore.open(tmp_path / "data", metadata_url=metadata_url,
                         maintenance_interval_ms=None)


def ownership_intervals(
    members: list[Member], end: float
) -> dict[int, list[tuple[float, float, str]]]:
    """Per partition, (start, end, member) of every stretch a member owned it."""
    intervals: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    for member in members:
        since: dict[int, float] = {}
        for line in list(member.lines):
            kind, *rest = line.split(" ")
            if kind not in ("A", "V", "L"):
                continue
            t = float(rest[0])
            parts = {int(p) for p in rest[1].split(",") if p not in ("", "-")}
            for p in parts:
                if kind == "A":
                    since[p] = t
                elif p in since:
                    intervals[p].append((since.pop(p), t, member.name))
        for p, t in since.items():
            intervals[p].append((t, member.ended_at or end, member.name))
    return intervals


def check_one_owner_at_a_time(members: list[Member]) -> None:
    intervals = ownership_intervals(members, time.monotonic())
    for partition, spans in intervals.items():
        spans.sort()
        for (_s1, e1, m1), (s2, _e2, m2) in pairwise(spans):
            assert e1 <= s2, f"partition {partition}: {m1} owned it until {e1}, {m2} from {s2}"
    for member in members:
        for t, partition, _, _ in member.records():
            assert any(s <= t <= e for s, e, name in intervals[partition] if name == member.name), (
                f"{member.name} processed partition {partition} at {t} without owning it")


def _offsets(events: list[list[str]]) -> dict[int, int]:
    """The last committed offset per partition in "C"/"c" events."""
    offsets: dict[int, int] = {}
    for _, _, items in events:
        for item in items.split(","):
            if ":" in item:
                p, o = item.split(":")
                offsets[int(p)] = int(o)
    return offsets


@pytest.mark.slow
def test_a_killed_member_loses_nothing_and_partitions_never_have_two_owners(
    tmp_path: Path, start, metadata_url: str | None
) -> None:
    total = 60_000
    with open_log(tmp_path, metadata_url) as log:
        log.create_topic("t", partitions=PARTITIONS)
        with log.producer(linger_ms=20) as producer:
            for i in range(total):
                producer.send("t", value=b"%d" % i, key=b"key-%d" % (i % 997))
    # Processing takes a while before each commit, so the kill lands in uncommitted work.
    members = [start(f"w{i}", process_ms=30) for i in range(3)]
    wait_for(lambda: sum(len(m.records()) for m in members) > 15_000, "processing to start")
    victim = members[1]
    victim.kill()
    wait_for(lambda: len({(p, o) for m in members for _, p, o, _ in m.records()}) == total,
             "every record to be processed", 180)
    moved_at = min(float(line.split(" ")[1]) for m in (members[0], members[2])
                   for line in m.lines if line.startswith("A ") and float(line.split(" ")[1]) >
                   (victim.ended_at or 0) and line.split(" ")[2] != "-")
    for member in (members[0], members[2]):
        member.stop()

    check_one_owner_at_a_time(members)
    # The victim's partitions moved within the session timeout (plus a rebalance's steps).
    assert moved_at - (victim.ended_at or 0) < SESSION_MS / 1000 + 10
    # Duplicates only from what the victim processed after its last successful commit.
    committed = _offsets(victim.events("C"))
    # Killed between a commit and its "C" line, the last attempted commit may have landed.
    attempts = victim.events("c")
    maybe = _offsets(attempts) if len(attempts) > len(victim.events("C")) else committed
    seen: dict[tuple[int, int], int] = defaultdict(int)
    for member in members:
        for _, p, o, _ in member.records():
            seen[(p, o)] += 1
    duplicates = {k for k, n in seen.items() if n > 1}
    uncommitted = {(p, o) for _, p, o, _ in victim.records() if o >= committed.get(p, 0)}
    unattempted = {(p, o) for _, p, o, _ in victim.records() if o >= maybe.get(p, 0)}
    assert duplicates <= uncommitted, "a record was processed twice without a crash explaining it"
    assert duplicates in (uncommitted, unattempted), (
        "uncommitted work of the victim was not redone")
    print(f"duplicates after the kill: {len(duplicates)} (victim's uncommitted work: "
          f"{len(uncommitted)})")
    for member in (members[0], members[2]):
        assert not member.events("F"), "a live member's commit was rejected"


@pytest.mark.slow
def test_members_joining_and_leaving_during_production_with_cooperative_sticky(
    tmp_path: Path, start, metadata_url: str | None
) -> None:
    with open_log(tmp_path, metadata_url) as log:
        log.create_topic("t", partitions=PARTITIONS)
        stop = threading.Event()
        produced = [0]

        def produce() -> None:
            with log.producer(linger_ms=5) as producer:
                while not stop.is_set():
                    producer.send("t", value=b"%d" % produced[0], key=b"k%d" % produced[0])
                    produced[0] += 1
                    if produced[0] % 200 == 0:
                        producer.flush()
                        time.sleep(0.01)

        producer_thread = threading.Thread(target=produce)
        producer_thread.start()
        first = start("w1", strategy="cooperative-sticky")
        second = start("w2", strategy="cooperative-sticky")
        wait_for(lambda: len(first.owned()) == 3 and len(second.owned()) == 3,
                 "two members to share the partitions")
        kept = {m.name: m.owned() for m in (first, second)}
        revocations_before = len(first.events("V")) + len(second.events("V"))
        third = start("w3", strategy="cooperative-sticky")
        wait_for(lambda: all(len(m.owned()) == 2 for m in (first, second, third)),
                 "three members to share the partitions")
        moved = third.owned()
        revoked = [int(p) for m in (first, second) for _, _, parts in m.events("V")[
            revocations_before if m is first else 0:] for p in parts.split(",") if p != "-"]
        assert sorted(revoked) == sorted(moved), "cooperative-sticky revoked more than moved"
        for member in (first, second):
            assert member.owned() <= kept[member.name], "an unaffected partition moved"
        first.stop()  # leaves the group
        wait_for(lambda: len(second.owned()) + len(third.owned()) == 6,
                 "the leaver's partitions to move")
        stop.set()
        producer_thread.join()
        total = produced[0]
        members = [first, second, third]
        wait_for(lambda: len({(p, o) for m in members for _, p, o, _ in m.records()}) == total,
                 "every produced record to be processed", 120)
        second.stop()
        third.stop()
    check_one_owner_at_a_time(members)
    values = [v for m in members for _, _, _, v in m.records()]
    assert len(values) == len(set(values)) == total, "graceful rebalances duplicated records"


@pytest.mark.slow
def test_a_static_member_restarting_in_time_causes_no_rebalance(
    tmp_path: Path, start, metadata_url: str | None
) -> None:
    with open_log(tmp_path, metadata_url) as log:
        log.create_topic("t", partitions=PARTITIONS)
        a = start("a", instance="worker-a")
        b = start("b", instance="worker-b")
        wait_for(lambda: len(a.owned()) == 3 and len(b.owned()) == 3,
                 "both static members to be assigned")
        generation = log.describe_group("g").generation
        mine = a.owned()
        a.stop()
        restarted = start("a2", instance="worker-a")
        wait_for(lambda: restarted.owned() == mine, "the restart to get its partitions")
        assert log.describe_group("g").generation == generation
        assert not b.events("V"), "the other member saw a rebalance"
        restarted.stop()
        b.stop()


@pytest.mark.slow
def test_a_paused_zombie_loses_its_partitions_and_cannot_commit_them(
    tmp_path: Path, start, metadata_url: str | None
) -> None:
    with open_log(tmp_path, metadata_url) as log:
        log.create_topic("t", partitions=2)
        live = start("live")
        zombie = start("zombie")
        wait_for(lambda: len(live.owned()) == 1 and len(zombie.owned()) == 1,
                 "two members")
        os.kill(zombie.proc.pid, signal.SIGSTOP)
        wait_for(lambda: len(live.owned()) == 2, "the paused member to be expired", 60)
        with log.producer(linger_ms=0) as producer:
            for i in range(20):
                producer.send("t", value=b"late-%d" % i, partition=i % 2)
        wait_for(lambda: len(live.records()) == 20, "the live member to process everything")
        resumed_at = time.monotonic()
        os.kill(zombie.proc.pid, signal.SIGCONT)
        wait_for(lambda: any(float(e[1]) > resumed_at for e in zombie.events("A")),
                 "the zombie to rejoin", 60)
        # After waking up it first gave up what it held, and processed nothing stale.
        late_by_zombie = [r for r in zombie.records() if r[0] > resumed_at]
        lost = zombie.events("L")
        assert lost and float(lost[-1][1]) > resumed_at
        assert all(t > float(lost[-1][1]) for t, *_ in late_by_zombie)
        zombie.stop()
        live.stop()
    check_one_owner_at_a_time([live])
