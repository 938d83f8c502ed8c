"""Helpers of the assignor tests: readable assignments, random groups, rebalance simulation.

Everything here is pure (no fixtures with state); tests import it with ``from .conftest import``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from functools import cache

from hypothesis import strategies as st

from logstore.coordinator.assignors import PartitionAssignor, Subscription
from logstore.types import TopicPartition

Assignment = dict[str, list[TopicPartition]]
Counts = dict[str, int]
Subscriptions = dict[str, Subscription]

# "d" is never given partitions by the strategies below: a subscribed topic that does not exist.
TOPICS = ("a", "b", "c", "d")


def tps(text: str) -> tuple[TopicPartition, ...]:
    """``"a-0 a-1 b-2"`` -> the three TopicPartitions, for readable hand-written cases."""
    return tuple(
        TopicPartition(topic, int(p)) for topic, p in (w.rsplit("-", 1) for w in text.split())
    )


def show(assignment: Mapping[str, list[TopicPartition]]) -> dict[str, str]:
    """The inverse of :func:`tps` per member, so expected assignments read like Kafka's docs."""
    return {m: " ".join(str(tp) for tp in parts) for m, parts in assignment.items()}


def all_partitions(counts: Mapping[str, int], subs: Mapping[str, Subscription]) -> set:
    """Every partition of a topic that exists and has at least one subscriber."""
    subscribed = {t for s in subs.values() for t in s.topics}
    return {TopicPartition(t, p) for t, n in counts.items() if t in subscribed for p in range(n)}


def effective_topics(counts: Mapping[str, int], sub: Subscription) -> frozenset[str]:
    return frozenset(t for t in sub.topics if counts.get(t, 0) > 0)


@st.composite
def groups(
    draw: st.DrawFn, *, owned: bool = False, identical: bool = False, max_members: int = 6
) -> tuple[Counts, Subscriptions]:
    """A random group: topic counts (some 0, "d" missing) and subscriptions.

    Member ids are arbitrary short strings; some members are static, with instance ids in an
    order unrelated to their member ids. With ``owned`` members claim random partitions (some
    nonexistent, some claimed twice) with random generations, like a group after a crash.
    """
    counts = draw(st.dictionaries(st.sampled_from(TOPICS[:3]), st.integers(0, 7)))
    n = draw(st.integers(1, max_members))
    ids = draw(
        st.lists(st.text("abyz019", min_size=1, max_size=3), min_size=n, max_size=n, unique=True)
    )
    instance_rank = draw(st.permutations(range(n)))
    shared = draw(st.lists(st.sampled_from(TOPICS), unique=True, min_size=1))
    subs: Subscriptions = {}
    for i, member_id in enumerate(ids):
        topics = shared if identical else draw(st.lists(st.sampled_from(TOPICS), unique=True))
        claims = (
            draw(
                st.lists(
                    st.builds(TopicPartition, st.sampled_from(TOPICS), st.integers(0, 8)),
                    max_size=6,
                )
            )
            if owned
            else []
        )
        subs[member_id] = Subscription(
            topics=tuple(topics),
            owned_partitions=tuple(claims),
            generation=draw(st.integers(-1, 3)) if owned else -1,
            group_instance_id=f"inst{instance_rank[i]}" if draw(st.booleans()) else None,
        )
    return counts, subs


def reordered(
    counts: Counts, subs: Subscriptions, rnd: random.Random
) -> tuple[Counts, Subscriptions]:
    """The same input with every dict and tuple in another order (and duplicates added)."""

    def shuffled(items: list) -> list:
        items = list(items)
        rnd.shuffle(items)
        return items

    new_counts = dict(shuffled(list(counts.items())))
    new_subs = {
        m: Subscription(
            topics=tuple(shuffled(list(s.topics) * 2)),
            owned_partitions=tuple(shuffled(list(s.owned_partitions))),
            generation=s.generation,
            group_instance_id=s.group_instance_id,
        )
        for m, s in shuffled(list(subs.items()))
    }
    return new_counts, new_subs


def check_well_formed(counts: Counts, subs: Subscriptions, result: Assignment) -> None:
    """Every member present; lists sorted, without repeats; each partition once, to a subscriber."""
    assert set(result) == set(subs)
    seen: set[TopicPartition] = set()
    for member_id, parts in result.items():
        assert parts == sorted(set(parts))
        for tp in parts:
            assert tp.topic in subs[member_id].topics
            assert 0 <= tp.partition < counts.get(tp.topic, 0)
            assert tp not in seen, f"{tp} assigned twice"
            seen.add(tp)


def check_cooperative(subs: Subscriptions, result: Assignment) -> None:
    """No partition is given to a member while another member still owns it.

    Precisely, as Kafka's coordinator checks it: a member gets a partition only if it owns it
    already or nobody lists it; and of two claimants only the one with the strictly higher
    generation may keep it.
    """
    claimants: dict[TopicPartition, list[str]] = {}
    for member_id, sub in subs.items():
        for tp in set(sub.owned_partitions):
            claimants.setdefault(tp, []).append(member_id)
    for member_id, parts in result.items():
        for tp in parts:
            others = [m for m in claimants.get(tp, []) if m != member_id]
            if not others:
                continue
            assert tp in subs[member_id].owned_partitions, f"{tp} to {member_id}, owned by {others}"
            for other in others:
                assert subs[other].generation < subs[member_id].generation


def rebalance(
    assignor: PartitionAssignor,
    counts: Counts,
    topics_of: Mapping[str, tuple[str, ...]],
    owned: Mapping[str, list[TopicPartition]],
    generation: int,
) -> tuple[Subscriptions, Assignment]:
    """One rebalance round: every member reports what it owns (its last result) in
    ``generation``."""
    subs = {
        m: Subscription(
            topics=topics_of[m], owned_partitions=tuple(owned.get(m, ())), generation=generation
        )
        for m in topics_of
    }
    return subs, assignor.assign(counts, subs)


def min_sum_of_squares(counts: Counts, subs: Subscriptions) -> int:
    """The best achievable sum of squared loads, by exhaustive search (small inputs only)."""
    members = sorted(subs)
    choices = [
        tuple(i for i, m in enumerate(members) if tp.topic in subs[m].topics)
        for tp in sorted(all_partitions(counts, subs))
    ]

    @cache
    def best(k: int, loads: tuple[int, ...]) -> int:
        if k == len(choices):
            return sum(x * x for x in loads)
        return min(best(k + 1, (*loads[:i], loads[i] + 1, *loads[i + 1:])) for i in choices[k])

    return best(0, (0,) * len(members))
