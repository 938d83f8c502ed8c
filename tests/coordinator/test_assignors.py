"""The partition assignors: Kafka's range, roundrobin and cooperative-sticky.

Hand-written cases pin exact assignments (several are the examples of Kafka's own javadoc);
property tests check the invariants on random groups, and the cooperative-sticky tests simulate
successive rebalances, feeding each round's result back as the members' owned partitions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logstore.coordinator.assignors import (
    ASSIGNORS,
    COOPERATIVE,
    EAGER,
    PartitionAssignor,
    Subscription,
    get_assignor,
)
from logstore.errors import InvalidArgumentError

from .conftest import (  # type: ignore[import-not-found]
    TOPICS,
    all_partitions,
    check_cooperative,
    check_well_formed,
    effective_topics,
    groups,
    min_sum_of_squares,
    rebalance,
    reordered,
    show,
    tps,
)

RANGE, ROUNDROBIN, STICKY = (get_assignor(n) for n in ("range", "roundrobin", "cooperative-sticky"))
S = Subscription
FAST = settings(max_examples=150, deadline=None)


# --- registry -------------------------------------------------------------------------------


def test_registry_names_and_protocols() -> None:
    assert {name: a.rebalance_protocol for name, a in ASSIGNORS.items()} == {
        "range": EAGER,
        "roundrobin": EAGER,
        "cooperative-sticky": COOPERATIVE,
    }
    assert all(a.name == name and get_assignor(name) is a for name, a in ASSIGNORS.items())


@pytest.mark.parametrize("name", ["sticky", "Range", "", None])
def test_unknown_assignor_is_an_invalid_argument(name: object) -> None:
    with pytest.raises(InvalidArgumentError, match="range, roundrobin"):
        get_assignor(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("assignor", ASSIGNORS.values(), ids=list(ASSIGNORS))
@pytest.mark.parametrize("count", [-1, 2.0, True])
def test_bad_partition_count_is_rejected(assignor: PartitionAssignor, count: object) -> None:
    with pytest.raises(InvalidArgumentError):
        assignor.assign({"a": count}, {"m": S(("a",))})  # type: ignore[dict-item]


@pytest.mark.parametrize("assignor", ASSIGNORS.values(), ids=list(ASSIGNORS))
def test_empty_group(assignor: PartitionAssignor) -> None:
    assert assignor.assign({"a": 3}, {}) == {}


# --- range -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "subs", "expected"),
    [
        pytest.param(  # Kafka's javadoc example
            {"t0": 3, "t1": 3},
            {"C0": S(("t0", "t1")), "C1": S(("t1", "t0"))},
            {"C0": "t0-0 t0-1 t1-0 t1-1", "C1": "t0-2 t1-2"},
            id="javadoc",
        ),
        pytest.param(
            {"a": 5, "b": 2},
            {"c0": S(("a",)), "c1": S(("a", "b")), "c2": S(("b",))},
            {"c0": "a-0 a-1 a-2", "c1": "a-3 a-4 b-0", "c2": "b-1"},
            id="unequal-subscriptions",
        ),
        pytest.param(
            {"a": 3, "z": 0},
            {"m1": S(("a", "d")), "m2": S(("z",)), "m3": S(("a",)), "m4": S(())},
            {"m1": "a-0 a-1", "m2": "", "m3": "a-2", "m4": ""},
            id="missing-and-empty-topics",
        ),
        pytest.param(
            {"a": 2},
            {"x": S(("a",)), "y": S(("a",)), "z": S(("a",))},
            {"x": "a-0", "y": "a-1", "z": ""},
            id="more-members-than-partitions",
        ),
        pytest.param(  # static members rank by instance id, not by member id
            {"a": 4},
            {"m-9": S(("a",), group_instance_id="i1"), "m-1": S(("a",), group_instance_id="i2")},
            {"m-9": "a-0 a-1", "m-1": "a-2 a-3"},
            id="static-members",
        ),
        pytest.param(  # Kafka's MemberInfo order: static members before dynamic ones
            {"t": 3},
            {"a": S(("t",)), "b": S(("t",), group_instance_id="zz")},
            {"a": "t-2", "b": "t-0 t-1"},
            id="static-before-dynamic",
        ),
    ],
)
def test_range_exact(counts: dict, subs: dict, expected: dict) -> None:
    assert show(RANGE.assign(counts, subs)) == expected


@pytest.mark.parametrize("assignor", [RANGE, ROUNDROBIN], ids=["range", "roundrobin"])
def test_static_member_restart_keeps_its_partitions(assignor: PartitionAssignor) -> None:
    before = {"m-5": S(("a",), group_instance_id="p1"), "m-7": S(("a",), group_instance_id="p2")}
    # p1 restarts and gets a member id that now sorts after p2's; its share must not change.
    after = {"m-9": S(("a",), group_instance_id="p1"), "m-7": S(("a",), group_instance_id="p2")}
    first, second = assignor.assign({"a": 5}, before), assignor.assign({"a": 5}, after)
    assert second["m-9"] == first["m-5"] and second["m-7"] == first["m-7"]


# --- roundrobin ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "subs", "expected"),
    [
        pytest.param(  # Kafka's javadoc example, identical subscriptions
            {"t0": 3, "t1": 3},
            {"C0": S(("t0", "t1")), "C1": S(("t0", "t1"))},
            {"C0": "t0-0 t0-2 t1-1", "C1": "t0-1 t1-0 t1-2"},
            id="javadoc-identical",
        ),
        pytest.param(  # Kafka's javadoc example, unequal subscriptions
            {"t0": 1, "t1": 2, "t2": 3},
            {"C0": S(("t0",)), "C1": S(("t0", "t1")), "C2": S(("t0", "t1", "t2"))},
            {"C0": "t0-0", "C1": "t1-0", "C2": "t1-1 t2-0 t2-1 t2-2"},
            id="javadoc-unequal",
        ),
        pytest.param(
            {"a": 2, "b": 3, "z": 0},
            {"m1": S(("a", "d")), "m2": S(("z",)), "m3": S(("a", "b")), "m4": S(())},
            {"m1": "a-0", "m2": "", "m3": "a-1 b-0 b-1 b-2", "m4": ""},
            id="missing-and-empty-topics",
        ),
        pytest.param(
            {"a": 4},
            {
                "a": S(("a",), group_instance_id="i2"),
                "b": S(("a",), group_instance_id="i1"),
                "c": S(("a",), group_instance_id="i0"),
            },
            {"a": "a-2", "b": "a-1", "c": "a-0 a-3"},
            id="static-members",
        ),
    ],
)
def test_roundrobin_exact(counts: dict, subs: dict, expected: dict) -> None:
    assert show(ROUNDROBIN.assign(counts, subs)) == expected


# --- properties of all three -----------------------------------------------------------------


@FAST
@given(group=groups(owned=True), rnd=st.randoms(use_true_random=False))
def test_all_assignors_well_formed_and_deterministic(group, rnd) -> None:
    counts, subs = group
    for assignor in ASSIGNORS.values():
        result = assignor.assign(counts, subs)
        check_well_formed(counts, subs, result)
        assert assignor.assign(*reordered(counts, subs, rnd)) == result, assignor.name


@FAST
@given(group=groups())
def test_eager_assignors_assign_every_subscribed_partition(group) -> None:
    counts, subs = group
    for assignor in (RANGE, ROUNDROBIN):
        assigned = [tp for parts in assignor.assign(counts, subs).values() for tp in parts]
        assert sorted(assigned) == sorted(all_partitions(counts, subs)), assignor.name


@FAST
@given(group=groups())
def test_range_gives_each_subscriber_a_near_equal_contiguous_range(group) -> None:
    counts, subs = group
    result = RANGE.assign(counts, subs)
    for topic, n in counts.items():
        shares = [
            [tp.partition for tp in result[m] if tp.topic == topic]
            for m in subs
            if topic in subs[m].topics
        ]
        if n and shares:
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
            assert all(s == list(range(s[0], s[0] + len(s))) for s in shares if s)


@FAST
@given(group=groups(identical=True))
def test_roundrobin_balances_identical_subscriptions(group) -> None:
    counts, subs = group
    loads = [len(parts) for parts in ROUNDROBIN.assign(counts, subs).values()]
    assert max(loads) - min(loads) <= 1


def test_assignments_do_not_depend_on_hash_seed(tmp_path: Path) -> None:
    """Set and dict iteration order changes with PYTHONHASHSEED; the result must not."""
    script = (
        "import json, random\n"
        "from logstore.coordinator.assignors import ASSIGNORS, Subscription as S\n"
        "from logstore.types import TopicPartition as TP\n"
        "rnd, out = random.Random(5), []\n"
        "for _ in range(40):\n"
        "    topics = {f't{i}': rnd.randint(0, 9) for i in range(5)}\n"
        "    subs = {f'm{j}': S(tuple(rnd.sample(sorted(topics), 3)),\n"
        "        tuple(TP(f't{rnd.randint(0, 4)}', rnd.randint(0, 9)) for _ in range(4)),\n"
        "        rnd.randint(0, 2)) for j in range(rnd.randint(1, 7))}\n"
        "    out.append({n: {m: [list(tp) for tp in p]\n"
        "                     for m, p in a.assign(topics, subs).items()}\n"
        "        for n, a in ASSIGNORS.items()})\n"
        "print(json.dumps(out))\n"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=tmp_path,  # not the repository root, whose folders would shadow the package
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert json.loads(outputs[0]) == json.loads(outputs[1])


# --- cooperative-sticky: hand-written cases --------------------------------------------------


def _owned(result: dict) -> dict:
    return {m: list(parts) for m, parts in result.items()}


def _moved(before: dict, after: dict) -> int:
    """How many partitions changed owner between two complete assignments."""
    owner_before = {tp: m for m, parts in before.items() for tp in parts}
    return sum(owner_before.get(tp) not in (None, m) for m, parts in after.items() for tp in parts)


def test_sticky_join_moves_exactly_the_new_members_share() -> None:
    counts = {"t": 6}
    _, start = rebalance(STICKY, counts, {"a": ("t",), "b": ("t",)}, {}, 1)
    assert sorted(map(len, start.values())) == [3, 3]

    topics_of = {"a": ("t",), "b": ("t",), "c": ("t",)}
    subs, first = rebalance(STICKY, counts, topics_of, start, 2)
    check_cooperative(subs, first)
    # c gets nothing yet: a and b each revoke one partition first.
    assert first["c"] == []
    assert all(set(first[m]) < set(start[m]) and len(first[m]) == 2 for m in "ab")

    _, second = rebalance(STICKY, counts, topics_of, first, 3)
    assert first["a"] == second["a"] and first["b"] == second["b"]
    assert sorted(second["c"]) == sorted(
        set(start["a"] + start["b"]) - set(first["a"] + first["b"])
    )
    assert _moved(start, second) == 2
    assert rebalance(STICKY, counts, topics_of, second, 4)[1] == second


def test_sticky_leave_keeps_everybody_elses_partitions() -> None:
    counts = {"t": 6}
    _, start = rebalance(STICKY, counts, dict.fromkeys("abc", ("t",)), {}, 1)
    _, after = rebalance(STICKY, counts, {"a": ("t",), "b": ("t",)}, start, 2)
    assert set(start["a"]) < set(after["a"]) and set(start["b"]) < set(after["b"])
    assert sorted(map(len, after.values())) == [3, 3]


def test_sticky_zombie_claim_loses_to_the_newer_generation() -> None:
    subs = {
        "A": S(("t",), tps("t-0"), generation=4),
        "B": S(("t",), tps("t-1 t-2"), generation=4),
        "Z": S(("t",), tps("t-0 t-1"), generation=2),  # missed the rebalance of generation 4
    }
    result = STICKY.assign({"t": 4}, subs)
    assert show(result) == {"A": "t-0", "B": "t-1 t-2", "Z": "t-3"}
    check_cooperative(subs, result)


def test_sticky_equal_generation_claims_are_void_for_one_round() -> None:
    subs = {"A": S(("t",), tps("t-0"), generation=3), "B": S(("t",), tps("t-0"), generation=3)}
    assert show(STICKY.assign({"t": 2}, subs)) == {"A": "", "B": "t-1"}
    # Both revoked t-0, so the follow-up rebalance hands it out.
    follow_up = {"A": S(("t",), (), generation=4), "B": S(("t",), tps("t-1"), generation=4)}
    assert show(STICKY.assign({"t": 2}, follow_up)) == {"A": "t-0", "B": "t-1"}


def test_sticky_unsubscribed_partition_moves_only_after_revocation() -> None:
    counts = {"a": 2, "b": 2}
    owned = {"A": list(tps("a-0 b-0")), "B": list(tps("a-1 b-1"))}
    topics_of = {"A": ("b",), "B": ("a", "b")}  # A drops topic a
    subs, first = rebalance(STICKY, counts, topics_of, owned, 5)
    # Target: A b-0 b-1, B a-0 a-1; both hand-overs wait for a revocation.
    assert show(first) == {"A": "b-0", "B": "a-1"}
    check_cooperative(subs, first)
    _, second = rebalance(STICKY, counts, topics_of, _owned(first), 6)
    assert show(second) == {"A": "b-0 b-1", "B": "a-0 a-1"}


def test_sticky_balances_through_a_chain_of_members() -> None:
    """A (only x) has 3, C (only y) has 1: balance needs A -> B and B -> C at the same time."""
    counts = {"x": 3, "y": 3}
    topics_of = {"A": ("x",), "B": ("x", "y"), "C": ("y",)}
    owned = {"A": list(tps("x-0 x-1 x-2")), "B": list(tps("y-0 y-1")), "C": list(tps("y-2"))}
    _, first = rebalance(STICKY, counts, topics_of, owned, 1)
    _, second = rebalance(STICKY, counts, topics_of, _owned(first), 2)
    assert sorted(map(len, second.values())) == [2, 2, 2]
    assert _moved(owned, second) == 2


def test_sticky_places_free_partitions_before_moving_owned_ones() -> None:
    """Balance is reachable by placing the unowned partitions alone, so nothing is revoked
    (found by random search: balancing all partitions at once from the most loaded member
    first took y-1 or z-0 away from m1)."""
    counts = {"x": 1, "y": 4, "z": 3}
    topics_of = {"m0": ("y", "z"), "m1": ("y", "z"), "m2": ("y",), "m3": ("x", "y"), "m4": ("x",)}
    owned = {"m1": list(tps("y-1 z-0")), "m2": list(tps("y-2"))}
    subs, result = rebalance(STICKY, counts, topics_of, owned, 1)
    assert all(set(parts) <= set(result[m]) for m, parts in owned.items())
    check_balanced(counts, subs, result)


def test_sticky_drops_claims_on_deleted_topics_and_partitions() -> None:
    subs = {"A": S(("t", "gone"), tps("gone-0 t-7 t-0"), 1), "B": S(("t",), (), 1)}
    assert show(STICKY.assign({"t": 2}, subs)) == {"A": "t-0", "B": "t-1"}


# --- cooperative-sticky: properties ----------------------------------------------------------


def check_no_double_owner(subs: dict, result: dict) -> None:
    """The brief's wording: no partition is in one member's assignment while another member's
    Subscription.owned_partitions contains it (holds whenever claims do not conflict)."""
    for m, parts in result.items():
        for tp in parts:
            assert not [n for n, s in subs.items() if n != m and tp in s.owned_partitions]


def check_balanced(counts: dict, subs: dict, result: dict) -> None:
    """Complete, and loads within one of each other among members with the same topics."""
    assert {tp for parts in result.values() for tp in parts} == all_partitions(counts, subs)
    by_topics: dict[frozenset, list[int]] = {}
    for m, parts in result.items():
        by_topics.setdefault(effective_topics(counts, subs[m]), []).append(len(parts))
    assert all(max(loads) - min(loads) <= 1 for loads in by_topics.values())


def _topics_of(subs: dict) -> dict:
    return {m: s.topics for m, s in subs.items()}


@FAST
@given(group=groups(owned=True))
def test_sticky_never_gives_a_partition_its_owner_still_holds(group) -> None:
    counts, subs = group
    check_cooperative(subs, STICKY.assign(counts, subs))


@FAST
@given(group=groups(owned=True, max_members=7))
def test_sticky_converges_within_two_rounds(group) -> None:
    """From any state (stale claims, conflicts, deleted partitions), round 2 is final."""
    counts, subs = group
    first = STICKY.assign(counts, subs)
    gen = max(s.generation for s in subs.values()) + 1
    subs2, second = rebalance(STICKY, counts, _topics_of(subs), first, gen)
    check_no_double_owner(subs2, second)
    check_balanced(counts, subs2, second)
    assert rebalance(STICKY, counts, _topics_of(subs), second, gen + 1)[1] == second


@settings(max_examples=120, deadline=None)
@given(group=groups(owned=True, max_members=3))
def test_sticky_converged_assignment_is_optimally_balanced(group) -> None:
    """Against exhaustive search: the least sum of squared loads the subscriptions allow."""
    counts, subs = group
    counts = {t: min(n, 3) for t, n in counts.items()}  # keeps the search small
    first = STICKY.assign(counts, subs)
    subs2, second = rebalance(STICKY, counts, _topics_of(subs), first, 9)
    assert sum(len(p) ** 2 for p in second.values()) == min_sum_of_squares(counts, subs2)


@FAST
@given(
    group=groups(identical=True, max_members=5),
    joiners=st.integers(0, 3),
    leavers=st.integers(0, 4),
)
def test_sticky_membership_change_moves_the_minimum(group, joiners, leavers) -> None:
    """Identical subscriptions: members that leave free their partitions and nothing else moves;
    members that join take their share from the most loaded, as few partitions as possible."""
    counts, subs = group
    topics = next(iter(subs.values())).topics
    _, start = rebalance(STICKY, counts, _topics_of(subs), {}, 1)
    stay = sorted(subs)[: max(1, len(subs) - leavers)]
    topics_of = dict.fromkeys(stay, topics) | {f"new{i}": topics for i in range(joiners)}
    subs1, first = rebalance(STICKY, counts, topics_of, {m: start[m] for m in stay}, 2)
    check_no_double_owner(subs1, first)
    revoked = sum(len(set(start[m]) - set(first[m])) for m in stay)
    if joiners == 0:
        assert revoked == 0
        check_balanced(counts, subs1, first)
    n = len(all_partitions(counts, subs1))
    q, r = divmod(n, len(topics_of))
    kept = [len(start[m]) for m in stay]
    assert revoked == sum(max(0, k - q) for k in kept) - min(r, sum(k > q for k in kept))
    _, second = rebalance(STICKY, counts, topics_of, first, 3)
    check_balanced(counts, subs1, second)
    assert all(set(second[m]) >= set(first[m]) for m in topics_of)


_events = st.one_of(
    st.tuples(st.just("join"), st.lists(st.sampled_from(TOPICS), unique=True)),
    st.tuples(st.just("leave"), st.integers(0, 9)),
    st.tuples(
        st.just("resubscribe"), st.integers(0, 9), st.lists(st.sampled_from(TOPICS), unique=True)
    ),
    st.tuples(st.just("grow"), st.sampled_from(TOPICS), st.integers(1, 3)),
    st.tuples(st.just("delete"), st.sampled_from(TOPICS)),
)


@settings(max_examples=100, deadline=None)
@given(group=groups(max_members=4), events=st.lists(_events, max_size=6))
def test_sticky_under_membership_and_metadata_churn(group, events) -> None:
    """Members join, leave and resubscribe, topics grow and vanish, with a rebalance after each
    event: no round hands out a partition another member still owns, and two quiet rounds
    after the last event leave a complete, balanced, stable assignment."""
    counts, subs = group
    topics_of = _topics_of(subs)
    owned: dict = {}
    gen = 0
    for event in [("start",), *events]:
        members = sorted(topics_of)
        if event[0] == "join":
            topics_of[f"j{gen}"] = tuple(event[1])
        elif event[0] == "leave" and len(members) > 1:
            del topics_of[members[event[1] % len(members)]]
        elif event[0] == "resubscribe":
            topics_of[members[event[1] % len(members)]] = tuple(event[2])
        elif event[0] == "grow":
            counts[event[1]] = counts.get(event[1], 0) + event[2]
        elif event[0] == "delete":
            counts.pop(event[1], None)
        gen += 1
        subs, result = rebalance(STICKY, counts, topics_of, owned, gen)
        check_well_formed(counts, subs, result)
        check_no_double_owner(subs, result)
        owned = result
    subs, second = rebalance(STICKY, counts, topics_of, owned, gen + 1)
    check_balanced(counts, subs, second)
    assert rebalance(STICKY, counts, topics_of, second, gen + 2)[1] == second
