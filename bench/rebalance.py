"""How long a consumer group takes to hand a killed member's partitions to the others.

Each trial starts three member processes (this script with ``--member``) in one group on a
6-partition topic, waits until they share the partitions, kills one with SIGKILL and measures
the time until the two survivors own all six again. That time is detection (the session
timeout: a killed process cannot say goodbye) plus the rebalance itself (the survivors notice on
a heartbeat, rejoin, the leader assigns, everyone syncs). The same is measured for a member that
closes cleanly (it leaves the group, so there is no detection delay).

    python bench/rebalance.py                       # 10 trials per case
    python bench/rebalance.py --trials 20 --session-ms 6000 --heartbeat-ms 1000
    python bench/rebalance.py --metadata-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Times are wall-clock from time.monotonic(), which on Linux is the same clock in every process.
Prints a table and writes JSON (default bench/results/rebalance-<date>.json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PARTITIONS = 6


def member_main(args: argparse.Namespace) -> None:
    """A group member: prints "A <t> <partitions>" whenever its assignment changes."""
    import logstore

    class Listener:
        def __init__(self) -> None:
            self.owned: set[int] = set()

        def on_partitions_revoked(self, revoked: set) -> None:  # type: ignore[type-arg]
            self.owned -= {tp.partition for tp in revoked}
            self._print()

        def on_partitions_assigned(self, assigned: set) -> None:  # type: ignore[type-arg]
            self.owned |= {tp.partition for tp in assigned}
            self._print()

        def on_partitions_lost(self, lost: set) -> None:  # type: ignore[type-arg]
            self.on_partitions_revoked(lost)

        def _print(self) -> None:
            print("A", time.monotonic(), ",".join(map(str, sorted(self.owned))), flush=True)

    log = logstore.open(args.data_dir, metadata_url=args.metadata_url,
                        maintenance_interval_ms=None)
    consumer = log.consumer(group_id=args.group, session_timeout_ms=args.session_ms,
                            heartbeat_interval_ms=args.heartbeat_ms,
                            partition_assignment_strategy=args.strategy)
    consumer.subscribe(["t"], listener=Listener())
    print("ready", flush=True)
    while not (select.select([sys.stdin], [], [], 0)[0] and sys.stdin.readline()):
        consumer.poll(timeout_ms=100)
    consumer.close()
    log.close()


class Member:
    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.owned: set[int] = set()
        self.changes: list[tuple[float, set[int]]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if parts and parts[0] == "A":
                owned = {int(p) for p in parts[2].split(",")} if len(parts) > 2 else set()
                self.owned = owned
                self.changes.append((float(parts[1]), owned))


def wait_for(condition, timeout_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.005)


def trial(base: Path, args: argparse.Namespace, index: int, *, kill: bool) -> float:
    group = f"g-{'kill' if kill else 'leave'}-{index}"
    command = [sys.executable, __file__, "--member", "--data-dir", str(base),
               "--group", group, "--session-ms", str(args.session_ms),
               "--heartbeat-ms", str(args.heartbeat_ms), "--strategy", args.strategy]
    if args.metadata_url:
        command += ["--metadata-url", args.metadata_url]
    members = [Member(command) for _ in range(3)]
    try:
        wait_for(lambda: sorted(p for m in members for p in m.owned) == list(range(PARTITIONS))
                 and all(m.owned for m in members))
        victim, survivors = members[0], members[1:]
        started = time.monotonic()
        if kill:
            os.kill(victim.proc.pid, signal.SIGKILL)
        else:
            assert victim.proc.stdin is not None
            victim.proc.stdin.write("stop\n")
            victim.proc.stdin.flush()
        wait_for(lambda: sorted(p for m in survivors for p in m.owned) == list(range(PARTITIONS)))
        done = max(t for m in survivors for t, _ in m.changes)
        return done - started
    finally:
        for member in members:
            if member.proc.poll() is None:
                assert member.proc.stdin is not None
                member.proc.stdin.write("stop\n")
                member.proc.stdin.flush()
        for member in members:
            try:
                member.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                member.proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--group", default="g", help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--session-ms", type=int, default=6000)
    parser.add_argument("--heartbeat-ms", type=int, default=1000)
    parser.add_argument("--strategy", default="range")
    parser.add_argument("--metadata-url", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.member:
        member_main(args)
        return 0
    import logstore

    base = Path(tempfile.mkdtemp(prefix="logstore-rebalance-"))
    try:
        with logstore.open(base, metadata_url=args.metadata_url,
                           maintenance_interval_ms=None) as log:
            if "t" not in log.list_topics():
                log.create_topic("t", partitions=PARTITIONS)
        results = {}
        for case, kill in (("kill -9", True), ("clean close", False)):
            times = [trial(base, args, i, kill=kill) for i in range(args.trials)]
            results[case] = times
            print(f"{case:<12} median {statistics.median(times):6.2f} s   worst "
                  f"{max(times):6.2f} s   best {min(times):6.2f} s   ({len(times)} trials)",
                  flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out = args.out or Path(__file__).parent / "results" / (
        f"rebalance-{dt.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "rebalance",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "session_timeout_ms": args.session_ms,
        "heartbeat_interval_ms": args.heartbeat_ms,
        "strategy": args.strategy,
        "metadata": "postgresql" if args.metadata_url else "sqlite",
        "seconds": {case: {"median": statistics.median(t), "worst": max(t), "best": min(t),
                           "trials": t} for case, t in results.items()},
    }, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
