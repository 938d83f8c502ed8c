"""Kafka's CooperativeStickyAssignor (KIP-429): balanced, sticky, never a double owner.

One ``assign`` call works in two steps.

1. **Target.** Start from what members own (``Subscription.owned_partitions``), keeping a
   partition at its owner only if the owner still subscribes to its topic, the partition still
   exists, and the claim is undisputed. Disputes (a zombie that missed a rebalance still lists
   a partition) go to the claimant with the highest ``generation``, as in Kafka; a tie at the
   highest generation voids the claim. Then place the unowned partitions and balance.

   Balance is global, not merely local: the target minimises the sum of squared member loads
   (equivalently it is an optimal semi-matching, so it also minimises the maximum load). It is
   reached by applying *cost-reducing paths*: member ``u`` hands a partition to ``v1``, which
   hands one to ``v2``, ..., until a member whose load is at least two below ``u``'s; only the
   two ends change load. No such path exists exactly when the assignment is optimal. Hence
   loads differ by at most one whenever subscriptions permit that, and always between members
   with identical subscriptions (a direct one-step path would exist otherwise).

   Stickiness: first only partitions nobody keeps are placed and moved (an optimum with every
   kept partition fixed), then kept partitions may move too, and each path is chosen to move
   as few kept partitions as possible. For identical subscriptions this moves the minimum
   number of partitions (a joining member takes exactly its fair share, a leaving member's
   partitions go to the least loaded members and nothing else moves). For mixed subscriptions
   each path is minimal but the total is a greedy bound, as in Kafka.

2. **Cooperative adjustment.** A partition given to a member that does not own it while any
   other member still lists it in ``owned_partitions`` is left out of this round: its owner's
   assignment lacks it too, so the owner revokes it and rejoins, and the next rebalance hands
   it over. Hence: for every member ``m`` and every partition ``p`` assigned to ``m``, either
   ``m`` owns ``p`` or no member lists ``p``. Kafka's coordinator checks the same thing
   (nothing is both added to one member and revoked from another).

Convergence: feeding a round's result back as the owned partitions, the next round is complete
and optimal. The partitions left out in round one are then unclaimed, the kept ones are a subset
of an optimal target, so an optimum exists that moves no kept partition and step one finds it.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from typing import TYPE_CHECKING

from logstore.coordinator.range_assignor import partition_counts
from logstore.types import TopicPartition

if TYPE_CHECKING:
    from logstore.coordinator.assignors import Subscription

# One hop of a cost-reducing path: (giver, receiver, topic of the partition handed over).
_Hop = tuple[str, str, str]


class CooperativeStickyAssignor:
    """Balanced, sticky assignment for the cooperative protocol (see the module docstring).

    Stateless (all working state lives in one ``assign`` call); one instance may be used from
    any number of threads.
    """

    name = "cooperative-sticky"
    # Equal to assignors.COOPERATIVE; spelled out because importing it here would be circular.
    rebalance_protocol = "cooperative"

    def assign(
        self,
        partitions_per_topic: Mapping[str, int],
        subscriptions: Mapping[str, Subscription],
    ) -> dict[str, list[TopicPartition]]:
        """See :meth:`logstore.coordinator.assignors.PartitionAssignor.assign`.

        Partitions that must change owner are absent from every member's list this round, so
        a subscribed partition may be unassigned; a follow-up rebalance assigns it.
        """
        counts = partition_counts(partitions_per_topic)
        members = sorted(subscriptions)
        topics_of = {m: frozenset(subscriptions[m].topics) & counts.keys() for m in members}
        owner, claimed = _resolve_owners(members, subscriptions)

        # An owned partition stays put only while its owner may still have it.
        home = {
            tp: member_id
            for tp, member_id in owner.items()
            if tp.topic in topics_of[member_id] and 0 <= tp.partition < counts[tp.topic]
        }
        plan = _Plan(members, topics_of, home)
        plan.place_unkept(counts)
        plan.rebalance(move_kept=False)
        plan.rebalance(move_kept=True)

        # Cooperative adjustment: a member gets a partition it does not own only if nobody
        # lists it; otherwise whoever lists it must revoke it before the hand-over.
        return {
            member_id: [
                tp
                for tp in plan.partitions_of(member_id)
                if tp not in claimed or owner.get(tp) == member_id
            ]
            for member_id in members
        }


def _resolve_owners(
    members: list[str], subscriptions: Mapping[str, Subscription]
) -> tuple[dict[TopicPartition, str], set[TopicPartition]]:
    """Who owns each claimed partition, and the set of all claimed partitions.

    A partition listed by several members belongs to the one with the highest generation
    (the others missed a rebalance); if several share the highest generation nobody owns it
    (Kafka voids such claims), so it is placed like an unowned partition but, being claimed,
    held back for one round.
    """
    claimants: dict[TopicPartition, list[str]] = {}
    for member_id in members:
        for tp in dict.fromkeys(subscriptions[member_id].owned_partitions):
            claimants.setdefault(tp, []).append(member_id)
    owner: dict[TopicPartition, str] = {}
    for tp, ids in claimants.items():
        newest = max(subscriptions[m].generation for m in ids)
        winners = [m for m in ids if subscriptions[m].generation == newest]
        if len(winners) == 1:
            owner[tp] = winners[0]
    return owner, set(claimants)


class _Plan:
    """The target assignment while it is being built; lives inside one ``assign`` call.

    Per member and topic, the partition numbers it holds are split into *kept* (it owned
    them before this rebalance) and *placed* (anything else): moving a placed partition costs
    no stickiness, moving a kept one does. Empty inner sets are removed, so the topics a member
    holds are the union of the two dicts' keys. Not thread-safe (never shared).
    """

    def __init__(
        self,
        members: list[str],
        topics_of: Mapping[str, frozenset[str]],
        home: Mapping[TopicPartition, str],
    ) -> None:
        """Start from every member holding its valid owned partitions (``home``)."""
        self._order = {m: i for i, m in enumerate(members)}
        self._home = home
        self._eligible: dict[str, list[str]] = {}
        for member_id in members:
            for topic in topics_of[member_id]:
                self._eligible.setdefault(topic, []).append(member_id)
        self._load = dict.fromkeys(members, 0)
        self._kept: dict[str, dict[str, set[int]]] = {m: {} for m in members}
        self._placed: dict[str, dict[str, set[int]]] = {m: {} for m in members}
        self._assigned: set[TopicPartition] = set()
        for tp in sorted(home):
            self._add(home[tp], tp)

    def place_unkept(self, counts: Mapping[str, int]) -> None:
        """Give every partition nobody keeps to its least loaded eligible member.

        Partitions with the fewest eligible members go first, while those members still have
        room; this is only a good start, ``rebalance`` makes it optimal.
        """
        pending = [
            TopicPartition(topic, p)
            for topic in self._eligible
            for p in range(counts[topic])
            if TopicPartition(topic, p) not in self._assigned
        ]
        pending.sort(key=lambda tp: (len(self._eligible[tp.topic]), tp))
        for tp in pending:
            target = min(self._eligible[tp.topic], key=lambda m: (self._load[m], self._order[m]))
            self._add(target, tp)

    def rebalance(self, *, move_kept: bool) -> None:
        """Apply cost-reducing paths until none is left.

        Each path lowers the sum of squared loads by at least 2, so this terminates. With
        ``move_kept`` False only placed partitions move (the optimum with kept ones fixed).
        """
        while (path := self._find_path(move_kept)) is not None:
            # From the far end backwards, so each giver hands over a partition it held when
            # the path was found rather than the one it is about to receive.
            for giver, receiver, topic in reversed(path):
                self._add(receiver, TopicPartition(topic, self._take(giver, topic)))

    def partitions_of(self, member_id: str) -> list[TopicPartition]:
        return sorted(
            TopicPartition(topic, p)
            for held in (self._kept[member_id], self._placed[member_id])
            for topic, partitions in held.items()
            for p in partitions
        )

    def _add(self, member_id: str, tp: TopicPartition) -> None:
        # Kept means "at its owner": a partition that travels back home is kept again.
        held = self._kept if self._home.get(tp) == member_id else self._placed
        held[member_id].setdefault(tp.topic, set()).add(tp.partition)
        self._load[member_id] += 1
        self._assigned.add(tp)

    def _take(self, member_id: str, topic: str) -> int:
        """Remove and return one of the member's partitions of ``topic``, a placed one if any
        (it costs no stickiness); the highest-numbered, so the choice is deterministic."""
        held = (
            self._placed[member_id] if topic in self._placed[member_id] else self._kept[member_id]
        )
        partition = max(held[topic])
        held[topic].discard(partition)
        if not held[topic]:
            del held[topic]
        self._load[member_id] -= 1
        self._assigned.discard(TopicPartition(topic, partition))
        return partition

    def _find_path(self, move_kept: bool) -> list[_Hop] | None:
        """A cost-reducing path, or None if the plan is optimal for the movable partitions.

        Starts from the most loaded members; only members at least two above the minimum
        load can start one.
        """
        if not self._load:
            return None
        floor = min(self._load.values())
        starts = sorted(
            (m for m, load in self._load.items() if load >= floor + 2),
            key=lambda m: (-self._load[m], self._order[m]),
        )
        for start in starts:
            path = self._search(start, move_kept)
            if path is not None:
                return path
        return None

    def _search(self, start: str, move_kept: bool) -> list[_Hop] | None:
        """Dijkstra from ``start`` over "can hand a partition to" edges.

        A path's cost is (kept partitions it moves, hops); the first member popped whose load
        is at least two below ``start``'s ends the cheapest path, ties going to the least
        loaded receiver, then member order. The key grows along every edge (hops do), so a
        member's key is final when it is popped.
        """
        limit = self._load[start] - 2
        best: dict[str, tuple[int, int]] = {start: (0, 0)}
        parent: dict[str, tuple[str, str]] = {}
        heap = [(0, 0, self._load[start], self._order[start], start)]
        while heap:
            cost, hops, load, _, member_id = heapq.heappop(heap)
            if best[member_id] != (cost, hops):
                continue
            if member_id != start and load <= limit:
                return self._path_to(member_id, start, parent)
            placed = self._placed[member_id]
            kept = self._kept[member_id] if move_kept else {}
            for topic in sorted(placed.keys() | kept.keys()):
                key = (cost + (0 if topic in placed else 1), hops + 1)
                for receiver in self._eligible[topic]:
                    if receiver == member_id:
                        continue
                    if receiver not in best or key < best[receiver]:
                        best[receiver] = key
                        parent[receiver] = (member_id, topic)
                        entry = (*key, self._load[receiver], self._order[receiver], receiver)
                        heapq.heappush(heap, entry)
        return None

    @staticmethod
    def _path_to(end: str, start: str, parent: Mapping[str, tuple[str, str]]) -> list[_Hop]:
        path: list[_Hop] = []
        member_id = end
        while member_id != start:
            giver, topic = parent[member_id]
            path.append((giver, member_id, topic))
            member_id = giver
        path.reverse()
        return path
