"""Which rooms have new events, on a cluster: sharded pub/sub instead of reading every room.

On one engine the hub reads all its rooms with one blocking ``XREAD`` per tick. On a cluster
a command's keys must share a slot, so that would be one ``XREAD`` per room and tick, which
costs the server about 70 µs each in redis-py's cluster pipeline: 80 % of a core for 500
idle rooms at a 50 ms tick (``loadtest/bench_idle.py``; 15 % with wake-ups). Instead, every
script that adds a room event also publishes an empty message on the room's shard channel
(``RoomKeys.wake``), which lives on the room's master (``SPUBLISH``); each process
subscribes (``SSUBSCRIBE``) to the channels of the rooms it serves and reads a room only
when it was woken. A message goes only to the nodes serving that room, from the master
holding it, so adding masters adds capacity.

A wake-up is a hint, so nothing is missed when one is:

- a room is read on every tick from the moment it is followed until its subscription is
  confirmed, and once more after (a message published before the subscription took effect
  would otherwise be lost);
- every room is read at least every ``FULL_READ_S`` (a message lost with a connection in a
  failover, or during a slot's migration, costs at most that much delay);
- any error on the subscriptions reads every room this tick and starts them over.

redis-py's cluster pub/sub moves each subscription to the new master when a slot moves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable

from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.exceptions import MovedError

from server.keys import KeySchema
from server.store.connection import DeadlineCluster, within_deadline
from server.store.failures import ENGINE_ERRORS

# RuntimeError: redis-py's round-robin over the nodes' subscriptions can end up exhausted
# once every node's subscription was dropped; starting over mends it.
_RESET_ON: tuple[type[Exception], ...] = (*ENGINE_ERRORS, RuntimeError)

log = logging.getLogger(__name__)

# Every followed room is read at least this often, woken or not.
FULL_READ_S = 1.0
# Messages taken off the subscriptions per tick at most (the rest wait for the next tick).
MAX_MESSAGES = 100_000


class RoomWakeups:
    def __init__(self, cluster: RedisCluster, keys: KeySchema, full_read_s: float = FULL_READ_S) -> None:
        self._cluster = cluster
        # The subscriptions are the cluster client's too, and end within its deadline.
        self._timeout_s = cluster.timeout_s if isinstance(cluster, DeadlineCluster) else None
        self._keys = keys
        self._full_read_s = full_read_s
        self._pubsub: ClusterPubSub | None = None
        self._rooms: dict[str, str] = {}  # channel -> room id, for every followed room
        self._unconfirmed: set[str] = set()  # channels whose subscription is not confirmed yet
        self._woken: set[str] = set()  # room ids
        self._next_full_read = 0.0
        self._failing = False

    async def due(self, rooms: Iterable[str], reading: Collection[str] | None = None) -> set[str]:
        """Of ``reading`` (default: all of ``rooms``, every room the process serves now), those
        to read now. Follows the rooms not followed yet, and stops following the others.
        Every room is due once a second, at a read of all of them."""
        wanted = set(rooms)
        among = wanted if reading is None else wanted.intersection(reading)
        try:
            async with within_deadline(self._timeout_s):
                await self._follow(wanted)
                await self._drain()
        except _RESET_ON as exc:
            if not self._failing:
                log.warning("room wake-ups reset; reading every room meanwhile (%r)", exc)
            self._failing = True
            await self.aclose()
            if isinstance(exc, MovedError):
                # A subscription met a slot that moved: learn where slots live now.
                await self._refresh_slots()
            return among
        if self._failing:
            log.warning("room wake-ups working again")
            self._failing = False
        now = time.monotonic()
        if reading is None and now >= self._next_full_read:
            self._next_full_read = now + self._full_read_s
            due = wanted
        else:
            due = (self._woken | {self._rooms[channel] for channel in self._unconfirmed}) & among
        self._woken -= due
        self._woken &= wanted
        return due

    def wake(self, room_id: str) -> None:
        """Read ``room_id`` at the next tick too (the last read did not take all it had)."""
        self._woken.add(room_id)

    async def _follow(self, wanted: set[str]) -> None:
        if self._pubsub is None:
            self._pubsub = self._cluster.pubsub()
        following = set(self._rooms.values())
        gone = [self._keys.room(room_id).wake for room_id in following - wanted]
        if gone:
            for channel in gone:
                del self._rooms[channel]
                self._unconfirmed.discard(channel)
            await self._pubsub.sunsubscribe(*gone)
        new = {self._keys.room(room_id).wake: room_id for room_id in wanted - following}
        if new:
            self._rooms.update(new)
            self._unconfirmed.update(new)
            await self._pubsub.ssubscribe(*new)

    async def _drain(self) -> None:
        """Take every message already received off the subscriptions, without waiting."""
        assert self._pubsub is not None
        for _ in range(MAX_MESSAGES):
            message = await self._pubsub.get_sharded_message(timeout=0)
            if message is None:
                return
            channel = str(message["channel"])
            room_id = self._rooms.get(channel)
            if room_id is None:
                continue  # a room no longer followed
            kind = message["type"]
            if kind == "ssubscribe":
                self._unconfirmed.discard(channel)
            elif kind == "sunsubscribe":
                # Not asked for: the engine dropped it (the slot moved). Follow it anew.
                del self._rooms[channel]
                self._unconfirmed.discard(channel)
            self._woken.add(room_id)

    async def _refresh_slots(self) -> None:
        try:
            await self._cluster.nodes_manager.initialize()
        except _RESET_ON as exc:
            log.debug("refreshing the cluster's slots: %r", exc)

    async def aclose(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._rooms.clear()
        self._unconfirmed.clear()
        self._next_full_read = 0.0
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except _RESET_ON as exc:
                log.debug("closing the room wake-ups: %r", exc)
