"""Live rooms: going live and ending, the room's event stream, its state and presence.

Every call here touches one room's slot (``{r:<room>}``), apart from the creator's
one-live-room pointer and the listing of live rooms, which are kept beside it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster

from server.domain.events import ZERO_OFFSET, Offset, parse_offset
from server.errors import Conflict, Forbidden, NotFound
from server.keys import KeySchema
from server.store.batch import ScriptBatch
from server.store.records import CreatorCredit, Room, RoomState
from server.store.scripts import Scripts, queue_script, run_pipeline
from server.store.social import Social
from server.store.wakeups import RoomWakeups

StreamEntry = tuple[str, dict[str, str]]

# A finished live's events, leaderboard and guards are kept this long after it ends.
ENDED_ROOM_RETENTION_S = 24 * 3600
LEADERBOARD_SIZE = 10


@dataclass(frozen=True)
class Published:
    """The outcome of publishing a gift into its room."""

    status: str  # "ok", "dup" or "ended"
    combo: int
    ts: int


@dataclass(frozen=True)
class StreamWindow:
    """What the bounded stream still holds.

    A reader that has seen everything up to offset S can be given exactly what it missed if
    no entry after S was trimmed. Trimming (XADD MAXLEN ~) drops the oldest entries, so that
    holds when nothing was trimmed or S is not older than the first entry kept.
    """

    first: Offset
    last: Offset
    trimmed: bool

    def covers(self, since: Offset) -> bool:
        return not self.trimmed or since >= self.first


class Rooms:
    def __init__(
        self,
        redis: Redis,
        keys: KeySchema,
        scripts: Scripts,
        batch: ScriptBatch,
        stream_len: int,
        social: Social,
    ) -> None:
        self._redis = redis
        self._social = social
        self._keys = keys
        self._scripts = scripts
        self._batch = batch
        self._stream_len = stream_len
        self._wakeups = RoomWakeups(redis, keys) if isinstance(redis, RedisCluster) else None

    async def get(self, room_id: str) -> Room:
        """The room as the engine holds it now. Read through the batch (``store.batch``): it
        is the room check of every gift, whatever its transport, right before its debit."""
        key = self._keys.room(room_id).info
        return await self._batch.read(("HGETALL", key), lambda raw: self._room(room_id, raw))

    @staticmethod
    def _room(room_id: str, raw: dict[str, str]) -> Room:
        if not raw or "state" not in raw:
            raise NotFound(f"no room {room_id!r}", code="room_not_found")
        return Room(
            room_id=room_id,
            creator_id=raw["creator_id"],
            title=raw.get("title", ""),
            state=raw["state"],
            created_ms=int(raw["created_ms"]),
            ended_ms=int(raw["ended_ms"]) if "ended_ms" in raw else None,
            epoch=raw.get("epoch", raw["created_ms"]),
        )

    async def create(self, creator_id: str, room_id: str, title: str, now_ms: int) -> Room:
        live_key = self._keys.user(creator_id).live_room
        current = await self.live_room_of(creator_id)
        if current is not None:
            raise Conflict(f"already live in room {current.room_id!r}; end it first", code="already_live")
        room = Room(room_id, creator_id, title, "live", now_ms, None, secrets.token_hex(6))
        await self._redis.hset(
            self._keys.room(room_id).info,
            mapping={
                "creator_id": creator_id,
                "title": title,
                "state": "live",
                "created_ms": now_ms,
                "epoch": room.epoch,
            },
        )
        await self._redis.set(live_key, room_id)
        await self._social.went_live(creator_id, room_id)
        await self._redis.zadd(self._keys.live_rooms, {room_id: now_ms})
        return room

    async def end(self, room_id: str, user_id: str, is_admin: bool) -> Room:
        """End the live: open combos close, ``room_end`` goes out, the room leaves the listing."""
        room = await self.get(room_id)
        if room.creator_id != user_id and not is_admin:
            raise Forbidden("only the room's creator can end it")
        keys = self._keys.room(room_id)
        await self._scripts.room_end(
            keys=[
                keys.info,
                keys.events,
                keys.names,
                keys.combos,
                keys.top,
                keys.published,
                keys.presence,
                keys.followed,
                keys.shared,
            ],
            args=[self._stream_len, ENDED_ROOM_RETENTION_S, keys.wake],
        )
        live_key = self._keys.user(room.creator_id).live_room
        if await self._redis.get(live_key) == room_id:
            await self._redis.delete(live_key)
        await self._redis.zrem(self._keys.live_rooms, room_id)
        return await self.get(room_id)

    async def set_goal(self, room_id: str, user_id: str, is_admin: bool, coins: int) -> RoomState:
        room = await self.get(room_id)
        if room.creator_id != user_id and not is_admin:
            raise Forbidden("only the room's creator can set its goal")
        keys = self._keys.room(room_id)
        reply = await self._scripts.room_goal(
            keys=[keys.info, keys.events], args=[coins, self._stream_len, keys.wake]
        )
        if reply[0] == "missing":
            raise NotFound(f"no room {room_id!r}", code="room_not_found")
        if reply[0] == "ended":
            raise Conflict(f"room {room_id!r} has ended", code="room_ended")
        state = await self.state(room_id)
        assert state is not None
        return state

    async def live_room_of(self, creator_id: str) -> Room | None:
        """The creator's live room, if the creator is live."""
        room_id = await self._redis.get(self._keys.user(creator_id).live_room)
        if room_id is None:
            return None
        try:
            room = await self.get(room_id)
        except NotFound:
            return None
        return room if room.live else None

    async def publish_test_alert(self, room_id: str, now_ms: int) -> None:
        """A fake alert for the room's overlays only (viewers never see it)."""
        keys = self._keys.room(room_id)
        await self._redis.xadd(
            keys.events, {"t": "test_alert", "ts": now_ms}, maxlen=self._stream_len, approximate=True
        )
        await self._redis.spublish(keys.wake, "")

    async def live(self, limit: int) -> list[tuple[Room, RoomState]]:
        """Live rooms, newest first, each with its current state (viewers, leaderboard, goal)."""
        ids = await self._redis.zrevrange(self._keys.live_rooms, 0, limit - 1)
        if not ids:
            return []

        def build(pipe: Pipeline) -> None:
            for room_id in ids:
                pipe.hgetall(self._keys.room(room_id).info)
                self._state_call(pipe, room_id, "", -1)

        replies = await run_pipeline(self._redis, build, [self._scripts.room_state])
        rooms = []
        for i, room_id in enumerate(ids):
            raw, state = replies[2 * i], RoomState.from_reply(replies[2 * i + 1])
            if raw and state is not None and raw.get("state") == "live":
                rooms.append((self._room(room_id, raw), state))
        return rooms

    def publish_gift(
        self,
        credit: CreatorCredit,
        *,
        sender_name: str,
        streakable: bool,
        balance: int | None,
        combo_window_ms: int,
    ) -> asyncio.Future[Published]:
        """Add a debited gift to its room (totals, leaderboard, combo, event), at most once.

        The call is queued at once and sent with the gift path's other scripts of this
        event-loop turn (see ``store.batch``); await the future for the outcome.
        """
        keys = self._keys.room(credit.room_id)
        return self._batch.call(
            self._scripts.room_gift,
            [keys.info, keys.events, keys.top, keys.names, keys.combos, keys.published],
            [
                credit.event_id,
                credit.sender_id,
                sender_name,
                credit.gift_id,
                credit.count,
                credit.coins,
                1 if streakable else 0,
                combo_window_ms,
                self._stream_len,
                "" if balance is None else balance,
                keys.wake,
            ],
            lambda reply: Published(status=reply[0], combo=int(reply[1]), ts=int(reply[2])),
        )

    async def expire_combo(self, room_id: str, sender_id: str, last_ts: int, window_ms: int) -> int:
        """1: closed now; 0: already closed or continued; -1: its window has not passed yet."""
        keys = self._keys.room(room_id)
        result: int = await self._scripts.combo_expire(
            keys=[keys.events, keys.names, keys.combos],
            args=[sender_id, last_ts, window_ms, self._stream_len, keys.wake],
        )
        return result

    def _state_call(self, pipe: Pipeline, room_id: str, node: str, viewers: int, ttl_ms: int = 0) -> None:
        """Queue ``room_state.lua`` on ``pipe`` (sent by ``run_pipeline``, which loads it if need be)."""
        keys = self._keys.room(room_id)
        queue_script(
            pipe,
            self._scripts.room_state,
            [keys.info, keys.top, keys.names, keys.presence],
            [node, viewers, ttl_ms, LEADERBOARD_SIZE],
        )

    async def state(self, room_id: str) -> RoomState | None:
        return (await self.states([(room_id, -1)], "", 0))[0]

    async def states(
        self, reports: Sequence[tuple[str, int]], node: str, ttl_ms: int
    ) -> list[RoomState | None]:
        """Report this node's viewers in each room (-1: only read) and read every room's state."""

        def build(pipe: Pipeline) -> None:
            for room_id, viewers in reports:
                self._state_call(pipe, room_id, node, viewers, ttl_ms)

        replies = await run_pipeline(self._redis, build, [self._scripts.room_state])
        return [RoomState.from_reply(reply) for reply in replies]

    async def snapshot(self, room_id: str, recent: int) -> tuple[Room, RoomState, str, list[StreamEntry]]:
        """The room, its state, the stream's last offset and its last ``recent`` entries."""
        keys = self._keys.room(room_id)

        def build(pipe: Pipeline) -> None:
            pipe.hgetall(keys.info)
            self._state_call(pipe, room_id, "", -1)
            pipe.xrevrange(keys.events, count=recent)

        raw, state_reply, entries = await run_pipeline(self._redis, build, [self._scripts.room_state])
        room = self._room(room_id, raw)
        state = RoomState.from_reply(state_reply)
        assert state is not None
        entries.reverse()
        offset = entries[-1][0] if entries else ZERO_OFFSET
        return room, state, offset, entries

    async def read(
        self, cursors: dict[str, str], block_ms: int, count: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        """New entries after each room's cursor, waiting up to ``block_ms`` if there are none
        (on a cluster: the rooms woken since the last read, without waiting)."""
        if self._wakeups is not None:
            due = await self._wakeups.due(cursors)
            cursors = {room_id: offset for room_id, offset in cursors.items() if room_id in due}
            if not cursors:
                return []
        streams = {self._keys.room(room_id).events: offset for room_id, offset in cursors.items()}
        ids = {self._keys.room(room_id).events: room_id for room_id in cursors}
        if isinstance(self._redis, RedisCluster):
            read = [
                (ids[key], entries) for key, entries in await self._read_slots(self._redis, streams, count)
            ]
            if self._wakeups is not None:
                for room_id, entries in read:
                    if len(entries) >= count:
                        self._wakeups.wake(room_id)  # more to read: next tick, woken or not
            return read
        reply = await self._redis.xread(streams, count=count, block=block_ms)
        return [(ids[key], entries) for key, entries in reply or []]

    async def aclose(self) -> None:
        if self._wakeups is not None:
            await self._wakeups.aclose()

    @staticmethod
    async def _read_slots(
        cluster: RedisCluster, streams: dict[str, str], count: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        """On a cluster, one XREAD per hash slot (rooms are spread over slots, and a command's
        keys must share one), all in one pipeline that goes to each node once. They do not
        block: the hub reads again at its next tick anyway."""
        by_slot: dict[int, dict[str, str]] = {}
        for key, offset in streams.items():
            by_slot.setdefault(cluster.keyslot(key), {})[key] = offset
        async with cluster.pipeline() as pipe:
            for group in by_slot.values():
                pipe.xread(group, count=count)
            replies = await pipe.execute()
        return [(key, entries) for reply in replies for key, entries in (reply or [])]

    async def page(
        self, room_id: str, after: str, until: str, count: int
    ) -> tuple[list[StreamEntry], StreamWindow]:
        """The first ``count`` entries with offsets in (``after``, ``until``], oldest first,
        and the stream's window just after they were read, in one round trip.

        Trimming only ever drops the oldest entries, so if that window still covers
        ``after``, nothing after it was trimmed before the read either: the page is exact.
        """
        key = self._keys.room(room_id).events
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(key, min=f"({after}", max=until, count=count)
            pipe.exists(key)
            pipe.xinfo_stream(key)
            entries, exists, info = await pipe.execute(raise_on_error=False)
        if isinstance(entries, Exception):
            raise entries
        return entries, self._window(exists, info)

    async def window(self, room_id: str) -> StreamWindow:
        key = self._keys.room(room_id).events
        if not await self._redis.exists(key):
            return StreamWindow(first=(0, 0), last=(0, 0), trimmed=False)
        return self._window(1, await self._redis.xinfo_stream(key))

    @staticmethod
    def _window(exists: int | Exception, info: dict[str, Any] | Exception) -> StreamWindow:
        """The window ``XINFO STREAM`` describes (an error if the stream does not exist)."""
        if isinstance(exists, Exception):
            raise exists
        if not exists:
            return StreamWindow(first=(0, 0), last=(0, 0), trimmed=False)
        if isinstance(info, Exception):
            raise info
        first = info.get("first-entry")
        return StreamWindow(
            first=parse_offset(first[0]) if first else (0, 0),
            last=parse_offset(str(info["last-generated-id"])),
            trimmed=int(info["entries-added"]) > int(info["length"]),
        )
