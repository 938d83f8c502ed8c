"""Test worker: die by SIGKILL in the middle of tiered-storage work, at an exact point or at a
random moment.

Modes:

``copy-commit``
    Run ``log.tier()`` and SIGKILL this process when the tierer calls
    ``finish_remote_copy`` for the first time: the object is uploaded and the manifest says
    copy-started, but the copy never becomes copy-finished.
``delete-object``
    Run ``log.run_maintenance()`` (total retention, which must delete remote segments) and
    SIGKILL this process when it first deletes an object: the manifest says delete-started and
    the object still exists.
``loop``
    Forever: append ``--records`` records to partition 0 of TOPIC (record at offset i has value
    ``b"%d" % i``; this is the only writer), ``log.tier()``, ``log.run_maintenance()``, print
    "pass <log end offset>". A timer SIGKILLs the process ``--kill-after`` seconds after
    "ready".

Prints "ready" once the log is open and the trap set. If the work finishes without the trap
firing it prints "survived" and exits 3. ``--shift-ms`` moves this process's clock forward
(a later worker must not find the lease of a killed one still running).

Usage: tier_crash.py MODE DATA_DIR OBJECT_STORE_URL TOPIC [--shift-ms N] [--kill-after S]
                     [--records N]
"""

import argparse
import os
import signal
import sys
import threading
import time

import logstore
from logstore.records.builder import encode_batch


class ShiftedClock:
    """The system clock, ``shift_ms`` ahead."""

    def __init__(self, shift_ms: int) -> None:
        self.shift_ms = shift_ms

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.shift_ms

    def monotonic_ms(self) -> float:
        return time.monotonic() * 1000.0


def die(*_args: object, **_kwargs: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached


def append_numbered(log: logstore.Log, topic: str, count: int, clock: ShiftedClock) -> int:
    """Append ``count`` records in batches of 10, each valued with its own offset."""
    plog = log.partition_log(topic, 0)
    next_offset = plog.log_end_offset()
    end = next_offset + count
    while next_offset < end:
        n = min(10, end - next_offset)
        now = clock.time_ms()
        batch = encode_batch([(now, b"k%d" % ((next_offset + i) % 13), b"%d" % (next_offset + i),
                               ()) for i in range(n)])
        result = log.append(topic, 0, batch)
        assert result.base_offset == next_offset, (result, next_offset)
        next_offset += n
    return next_offset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["copy-commit", "delete-object", "loop"])
    parser.add_argument("data_dir")
    parser.add_argument("object_store_url")
    parser.add_argument("topic")
    parser.add_argument("--shift-ms", type=int, default=0)
    parser.add_argument("--kill-after", type=float, default=1.0)
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    clock = ShiftedClock(args.shift_ms)
    log = logstore.open(args.data_dir, object_store_url=args.object_store_url, clock=clock,
                        maintenance_interval_ms=None, tier_interval_ms=None)
    if args.mode == "copy-commit":
        type(log.metadata).finish_remote_copy = die
        print("ready", flush=True)
        log.tier(args.topic)
    elif args.mode == "delete-object":
        store = log.object_store
        assert store is not None
        store.delete = die
        print("ready", flush=True)
        log.run_maintenance(args.topic)
    else:
        timer = threading.Timer(args.kill_after, die)
        timer.daemon = True
        print("ready", flush=True)
        timer.start()
        while True:
            end = append_numbered(log, args.topic, args.records, clock)
            log.tier(args.topic)
            log.run_maintenance(args.topic)
            print(f"pass {end}", flush=True)
    print("survived", flush=True)
    log.close()
    sys.exit(3)


if __name__ == "__main__":
    main()
