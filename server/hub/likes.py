"""This process's likes and joins: the per-user like rate, and each room's tally of the tick
until the hub's tick writes it (``store.likes``, one script call per room and tick).

The like rate is counted here, in memory, per user and room: a user's socket lives in one
process, so that costs no engine call per tap. A user with sockets (or HTTP requests) on two
processes could get the rate on each; the room's total stays exact whatever the rate.

A process that dies loses the likes and joins it accepted since its last completed write:
one tick's worth normally, more only while the engine was unreachable. Nothing written is
lost, and nothing is written twice (``room_likes.lua`` keeps each process's last sequence
number).
"""

from __future__ import annotations

import logging
import time

from server import metrics
from server.domain.likes import LikeBucket, Tally
from server.store import Store
from server.store.failures import is_outage

log = logging.getLogger(__name__)

# How often the buckets of users who stopped liking are forgotten.
PRUNE_S = 5.0


class LikeTallies:
    def __init__(self, store: Store, node_id: str, rate_per_s: int) -> None:
        self.store = store
        self.node_id = node_id
        self.rate_per_s = rate_per_s
        self._buckets: dict[tuple[str, str], LikeBucket] = {}
        self._open: dict[str, Tally] = {}
        # Tallies sent whose outcome is not known yet (the engine failed to answer): sent
        # again, the same, at the next tick.
        self._sending: dict[str, tuple[int, Tally]] = {}
        self._seq = 0
        self._next_prune = 0.0

    @property
    def pending(self) -> bool:
        return bool(self._open or self._sending)

    def like(self, user_id: str, name: str, room_id: str, count: int) -> int:
        """Add up to ``count`` likes of the user to the room's tally, as many as the user's
        rate allows now; returns how many (the rest are dropped and counted)."""
        now = time.monotonic()
        bucket = self._buckets.get((user_id, room_id))
        if bucket is None:
            bucket = self._buckets[(user_id, room_id)] = LikeBucket(float(self.rate_per_s), now)
        accepted = bucket.take(count, self.rate_per_s, now)
        if accepted:
            self._open.setdefault(room_id, Tally()).like(user_id, name, accepted)
            metrics.LIKES_ACCEPTED.inc(accepted)
        if accepted < count:
            metrics.LIKES_DROPPED.inc(count - accepted)
        return accepted

    def joined(self, room_id: str, user_id: str, name: str) -> None:
        self._open.setdefault(room_id, Tally()).join(user_id, name)
        metrics.JOINS.inc()

    async def write(self) -> None:
        """Write every room's tally of this tick: one script call per room, all in one
        pipeline. If the engine fails to answer, the same tallies go again at the next tick
        (and this tick's new likes wait for the one after, in a room that had one)."""
        for room_id in [room_id for room_id in self._open if room_id not in self._sending]:
            self._seq += 1
            self._sending[room_id] = (self._seq, self._open.pop(room_id))
        self._prune()
        if not self._sending:
            return
        batch = [(room_id, seq, tally) for room_id, (seq, tally) in self._sending.items()]
        metrics.LIKE_FLUSHES.inc(len(batch))
        # An outage raises: the hub pauses, and the same tallies go again once it is over.
        written = await self.store.likes.write(self.node_id, batch)
        for (room_id, _, tally), outcome in zip(batch, written, strict=True):
            if isinstance(outcome, Exception):
                metrics.engine_error(outcome)
                if is_outage(outcome):
                    continue  # that room's master is away: sent again at the next tick
                # A refusal that would come again (a script error): sent for ever, it would
                # hold up this room's likes for good.
                log.error(
                    "%d likes dropped in room %s: the engine refused them",
                    tally.total_likes,
                    room_id,
                    exc_info=outcome,
                )
            elif outcome.status in ("ok", "dup"):  # "dup": an earlier send had landed
                metrics.LIKES_WRITTEN.inc(tally.total_likes)
            else:
                log.info("%d likes dropped: room %s is not live", tally.total_likes, room_id)
            del self._sending[room_id]

    def _prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_S
        full = [key for key, bucket in self._buckets.items() if bucket.full(self.rate_per_s, now)]
        for key in full:
            del self._buckets[key]
