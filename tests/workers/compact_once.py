"""Test worker: open the log, print "ready", compact every compacted topic once (forced),
printing the bytes read so far after every batch, then print "done".

The parent kills it with SIGKILL after a random number of progress lines, so kills land
anywhere in a pass: building the map, filtering, committing a rewrite, merging, unlinking.

Usage: compact_once.py DATA_DIR
"""

import sys

import logstore


def main() -> None:
    with logstore.open(sys.argv[1], maintenance_interval_ms=None) as log:
        print("ready", flush=True)
        log.compact(force=True, progress=lambda done, total: print(done, flush=True))
        print("done", flush=True)


if __name__ == "__main__":
    main()
