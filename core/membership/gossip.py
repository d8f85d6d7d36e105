"""The bounded, transmit-limited broadcast queue (memberlist's TransmitLimitedQueue).

One entry per subject peer: a newer update about a peer replaces the queued one
(SWIM §4.1, an update overrides older news about the same member). Updates
with the fewest transmissions go first, and an update is dropped after
`limit` transmissions (lambda * log n, see config.retransmit_limit). Buckets by
transmit count make `take` O(taken) rather than a sort.
"""

from __future__ import annotations

from agentmesh.core.membership.messages import Update


class GossipQueue:
    """Bounded queue of updates keyed by subject; drops the most-sent entry when full."""

    __slots__ = ("_buckets", "_sent", "dropped", "items_max")

    def __init__(self, items_max: int) -> None:
        assert items_max > 0
        self.items_max = items_max
        self._sent: dict[str, int] = {}  # subject -> transmissions so far
        self._buckets: list[dict[str, Update]] = [{}]  # index = transmissions so far
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._sent)

    def __contains__(self, subject: str) -> bool:
        return subject in self._sent

    def subjects(self) -> list[str]:
        return list(self._sent)

    def push(self, update: Update) -> None:
        """Queue `update`, replacing any queued update about the same peer."""
        subject = update.peer_id
        sent = self._sent.pop(subject, None)
        if sent is not None:
            del self._buckets[sent][subject]
        elif len(self._sent) >= self.items_max:
            self._drop_most_sent()
        self._sent[subject] = 0
        self._buckets[0][subject] = update

    def discard(self, subject: str) -> None:
        sent = self._sent.pop(subject, None)
        if sent is not None:
            del self._buckets[sent][subject]

    def _drop_most_sent(self) -> None:
        for bucket in reversed(self._buckets):
            if bucket:
                subject = next(iter(bucket))
                del bucket[subject]
                del self._sent[subject]
                self.dropped += 1
                return

    def take(self, count_max: int, limit: int) -> tuple[Update, ...]:
        """Up to `count_max` least-sent updates; each counts one transmission."""
        if not self._sent:
            return ()
        chosen: list[tuple[int, str]] = []
        for sent, bucket in enumerate(self._buckets):
            if bucket:
                chosen.extend(
                    (sent, subject) for subject in list(bucket)[: count_max - len(chosen)]
                )
                if len(chosen) >= count_max:
                    break
        taken: list[Update] = []
        for sent, subject in chosen:  # move after choosing, so nothing is taken twice
            update = self._buckets[sent].pop(subject)
            taken.append(update)
            if sent + 1 >= limit:
                del self._sent[subject]
            else:
                self._sent[subject] = sent + 1
                self._bucket(sent + 1)[subject] = update
        return tuple(taken)

    def _bucket(self, sent: int) -> dict[str, Update]:
        while len(self._buckets) <= sent:
            self._buckets.append({})
        return self._buckets[sent]
