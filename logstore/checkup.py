"""Checking and repairing a data directory (``Log.check``, ``Log.repair``; ``logstore check``,
``logstore repair``).

A check reads every partition the metadata store knows (or those of one topic) with
:func:`logstore.log.check.check_partition`, and also reports topic directories that the
metadata store does not know (it was lost or replaced, or a directory was copied in): their
records are never deleted by logstore, and ``repair --adopt`` recreates such a topic from its
directory.

A repair closes the partition in this process, plans the operator's choice
(:mod:`logstore.log.repair`), applies it unless it is a dry run, and checks again.

Thread-safe as far as the collaborators are; a repair should run while nothing writes to the
partition (see :mod:`logstore.log.repair`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logstore.backends.metadata import MetadataStore, TopicRecord
from logstore.clock import Clock
from logstore.errors import InvalidArgumentError, UnknownTopicOrPartitionError
from logstore.log.check import PartitionCheck, Problem, ProblemKind, check_partition
from logstore.log.manager import TOPICS_DIR, LogManager
from logstore.log.partition_state import STATE_FILE, PartitionState
from logstore.log.repair import RepairAction, RepairStep, apply_repair, plan_repair
from logstore.topic_cache import TopicCache


@dataclass(frozen=True, slots=True)
class PartitionRepair:
    """What a repair planned for one partition, whether it was applied, and the check after."""

    before: PartitionCheck
    steps: tuple[RepairStep, ...]
    applied: bool
    after: PartitionCheck | None


class Checkup:
    """Checks and repairs over the metadata store and the local partition logs."""

    def __init__(
        self, store: MetadataStore, cache: TopicCache, manager: LogManager, clock: Clock
    ) -> None:
        self._store = store
        self._cache = cache
        self._manager = manager
        self._clock = clock

    # --- check -----------------------------------------------------------------------------------

    def check(
        self,
        topic: str | None = None,
        partition: int | None = None,
        *,
        deep: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> list[PartitionCheck]:
        """Check every partition (of ``topic``, or one ``partition`` of it)."""
        records = self._topics(topic)
        checks: list[PartitionCheck] = []
        for record in records:
            for p in self._partitions(record.partition_count, partition):
                checks.append(self._check_one(record.name, p, record.topic_id, deep=deep,
                                              progress=progress))
        if topic is None:
            checks.extend(self._unknown_topics({r.name for r in records}))
        elif not records:
            checks.extend(self._unknown_topics(set(), only=topic))
        return checks

    def _check_one(self, topic: str, partition: int, topic_id: str, *, deep: bool,
                   progress: Callable[[int], None] | None) -> PartitionCheck:
        return check_partition(
            self._manager.partition_dir(topic, partition), topic=topic, partition=partition,
            topic_id=topic_id, doorbell_path=self._manager.doorbell_path(topic, partition),
            deep=deep, progress=progress)

    def _topics(self, topic: str | None) -> list[TopicRecord]:
        if topic is None:
            return self._store.list_topics()
        record = self._store.get_topic(topic)
        return [] if record is None else [record]

    @staticmethod
    def _partitions(count: int, partition: int | None) -> range:
        if partition is None:
            return range(count)
        if isinstance(partition, bool) or not isinstance(partition, int) or not (
                0 <= partition < count):
            raise UnknownTopicOrPartitionError(f"no partition {partition!r} (0 to {count - 1})")
        return range(partition, partition + 1)

    def _unknown_topics(self, known: set[str], *, only: str | None = None) -> list[PartitionCheck]:
        """Topic directories the metadata store does not know, as one finding each."""
        root = self._manager.data_dir / TOPICS_DIR
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name in known or (only is not None and name != only):
                continue
            topic_id, partitions = _directory_topic(root / name)
            if topic_id is None:
                continue
            problem = Problem(
                ProblemKind.FOREIGN_TOPIC_ID, str(root / name),
                f"{root / name} holds {len(partitions)} partitions of topic {name!r} (topic id "
                f"{topic_id}) that the metadata store does not know; 'logstore repair {name} "
                "--adopt' recreates the topic from it")
            found.append(PartitionCheck(name, -1, str(root / name), topic_id, -1, -1, None, (),
                                        (), 0, 0, (problem,)))
        return found

    # --- repair ----------------------------------------------------------------------------------

    def repair(
        self,
        topic: str,
        partition: int | None = None,
        *,
        action: str,
        dry_run: bool = False,
    ) -> list[PartitionRepair]:
        """Plan (and unless ``dry_run`` apply) ``action`` ("adopt" or "truncate") for every
        damaged partition of ``topic`` (or one ``partition``)."""
        try:
            chosen = RepairAction(action)
        except ValueError:
            raise InvalidArgumentError(
                f"unknown repair action {action!r}: use 'adopt' or 'truncate'") from None
        record = self._store.get_topic(topic)
        if record is None:
            return self._repair_unknown_topic(topic, chosen, dry_run=dry_run)
        repairs = []
        for p in self._partitions(record.partition_count, partition):
            before = self._check_one(topic, p, record.topic_id, deep=True, progress=None)
            steps = tuple(plan_repair(before, chosen))
            if not steps or dry_run:
                repairs.append(PartitionRepair(before, steps, False, None))
                continue
            self._manager.close_partition(topic, p)
            apply_repair(before, chosen, topic_id=record.topic_id,
                         doorbell_path=self._manager.doorbell_path(topic, p), clock=self._clock)
            after = self._check_one(topic, p, record.topic_id, deep=True, progress=None)
            repairs.append(PartitionRepair(before, steps, True, after))
        return repairs

    def _repair_unknown_topic(
        self, topic: str, action: RepairAction, *, dry_run: bool
    ) -> list[PartitionRepair]:
        findings = self._unknown_topics(set(), only=topic)
        if not findings:
            raise UnknownTopicOrPartitionError(
                f"unknown topic {topic!r} (and no directory {TOPICS_DIR}/{topic} to adopt)")
        finding = findings[0]
        if action is not RepairAction.ADOPT:
            raise InvalidArgumentError(
                f"topic {topic!r} is not in the metadata store; only --adopt can repair it "
                f"(or move {finding.directory} away yourself)")
        topic_id, partitions = _directory_topic(Path(finding.directory))
        step = RepairStep(finding.problems[0], (
            f"create topic {topic!r} (topic id {topic_id}, {len(partitions)} partitions, default "
            "configs) from its directory; set its configs afterwards"))
        if dry_run or topic_id is None:
            return [PartitionRepair(finding, (step,), False, None)]
        self._store.create_topic(topic, len(partitions), {}, created_ms=self._clock.time_ms(),
                                 topic_id=topic_id)
        self._cache.refresh()
        return [PartitionRepair(finding, (step,), True, None)]


def _directory_topic(directory: Path) -> tuple[str | None, list[int]]:
    """The topic id and partition numbers found in a topic directory (None if no partition
    there has a readable state file)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None, []
    partitions = sorted(int(n) for n in names if n.isdigit())
    for p in partitions:
        if (directory / str(p) / STATE_FILE).exists():
            state = PartitionState(directory / str(p))
            try:
                return state.get().topic_id, list(range(max(partitions) + 1))
            except Exception:  # noqa: BLE001, S112 - damaged: try another partition
                continue
            finally:
                state.close()
    return None, partitions
