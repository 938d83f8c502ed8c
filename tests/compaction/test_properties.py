"""Property: for any sequence of keyed writes and tombstones, segment rolls, batch sizes and
offset-map sizes, compaction keeps every key's latest value (a deleted key stays deleted),
keeps offsets and per-key order, and leaves nothing older than the latest below the
checkpoint; once the delete horizon passes, tombstones go too and the state still holds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logstore
from logstore.clock import ManualClock

KEYS = [b"k%d" % i for i in range(8)]

writes = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.one_of(st.none(), st.binary(min_size=0, max_size=6)),  # None: a tombstone
        st.booleans(),  # roll the segment after this write
    ),
    min_size=1, max_size=120,
)


# ``kit`` is a namespace of pure functions: sharing it between examples is safe.
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=writes, per_batch=st.integers(1, 5), map_slots=st.sampled_from([64, 128, 4096]),
       segment_bytes=st.sampled_from([300, 2000, 1 << 20]))
def test_compaction_preserves_the_latest_state(ops, per_batch, map_slots, segment_bytes, kit):
    clock = ManualClock()
    with tempfile.TemporaryDirectory() as tmp:
        log = logstore.open(Path(tmp) / "data", clock=clock, maintenance_interval_ms=None)
        try:
            config = dict(kit.COMPACTED, **{"segment.bytes": str(segment_bytes),
                                            "delete.retention.ms": "1000"})
            log.create_topic("c", partitions=1, config=config)
            pending: list[tuple[bytes, bytes | None]] = []
            for key, value, roll in ops:
                pending.append((key, value))
                if roll or len(pending) == per_batch:
                    kit.write(log, pending, per_batch=per_batch)
                    pending = []
                if roll:
                    kit.roll(log)
            kit.write(log, pending, per_batch=per_batch)
            check(log, kit, clock, map_slots)
        finally:
            log.close()


def check(log: logstore.Log, kit, clock: ManualClock, map_slots: int) -> None:
    before = kit.stored(log)
    by_offset = {offset: (key, value) for offset, key, value in before}
    report = log.compact(force=True, memory_bytes=24 * map_slots).partitions[0]
    after = kit.stored(log)
    assert kit.latest(after) == kit.latest(before)
    offsets = [offset for offset, _, _ in after]
    assert offsets == sorted(set(offsets))
    assert all(by_offset[offset] == (key, value) for offset, key, value in after)
    below = report.checkpoint_offset
    last_below = {key: offset for offset, key, _ in before if offset < below}
    kept_below = [(offset, key) for offset, key, _ in after if offset < below]
    assert sorted(kept_below) == sorted((o, k) for k, o in last_below.items())
    # Past the delete horizon, tombstones below the checkpoint disappear as well.
    clock.advance(1001)
    report = log.compact(force=True, memory_bytes=24 * map_slots).partitions[0]
    final = kit.stored(log)
    assert kit.latest(final) == kit.latest(before)
    assert not [o for o, _, value in final if value is None and o < report.checkpoint_offset
                and o < below]
