"""Live rooms: going live and ending, the room's event stream, its state and presence.

Every call here touches one room's slot (``{r:<room>}``), apart from the creator's
one-live-room pointer and the listing of live rooms, which are kept beside it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from server.domain.events import ZERO_OFFSET, Offset, parse_offset
from server.errors import Conflict, Forbidden, NotFound
from server.keys import KeySchema, RoomKeys
from server.store.batch import ScriptBatch
from server.store.records import CreatorCredit, Room, RoomState
from server.store.scripts import (
    COMBO_EXPIRE,
    ROOM_END,
    ROOM_GIFT,
    ROOM_GOAL,
    ROOM_STATE,
    ROOM_SUMMARY,
    Arguments,
    Call,
    Refusals,
    ScriptRunner,
    outcome,
)
from server.store.topology import StreamEntry, Topology

if TYPE_CHECKING:
    from server.store.social import Social  # which needs this module's refusals

# A finished live's events, leaderboard and guards are kept this long after it ends.
ENDED_ROOM_RETENTION_S = 24 * 3600
# The room hash's count of entries deleted from its stream (``chat_delete.lua``).
DELETED = "deleted"
LEADERBOARD_SIZE = 10


@dataclass(frozen=True)
class Published:
    """The outcome of publishing a gift into its room."""

    status: str  # "ok", "dup" or "ended"
    combo: int
    ts: int
    # The room's battle the gift's debit may fall in (``battle_score.lua`` decides), if any.
    battle_id: str | None = None


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
        topology: Topology,
        keys: KeySchema,
        runner: ScriptRunner,
        batch: ScriptBatch,
        stream_len: int,
        social: Social,
    ) -> None:
        self._topology = topology
        self._redis: Redis = topology.redis
        self._social = social
        self._keys = keys
        self._runner = runner
        self._batch = batch
        self._stream_len = stream_len
        self._wakeups = topology.wakeups(keys)

    def get(self, room_id: str) -> asyncio.Future[Room]:
        """The room as the engine holds it now. Read through the batch (``store.batch``): it
        is the room check of every gift, whatever its transport, right before its debit.
        Queued at the call, so reads queued with it in the same turn share its round trip."""
        key = self._keys.room(room_id).info
        return self._batch.read(("HGETALL", key), lambda raw: room_from_hash(room_id, raw))

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

    async def owned(self, room_id: str, user_id: str, is_admin: bool, to: str) -> Room:
        """The room, if ``user_id`` is its creator or an admin; else ``Forbidden`` (only the
        room's creator can ``to``)."""
        room = await self.get(room_id)
        if room.creator_id != user_id and not is_admin:
            raise Forbidden(f"only the room's creator can {to}")
        return room

    async def end(self, room: Room) -> Room:
        """End the live (its owner checked, ``owned``): open combos close, ``room_end`` goes
        out, the room leaves the listing."""
        room_id = room.room_id
        await self._runner.call(ROOM_END, *room_end_arguments(self._keys.room(room_id), self._stream_len))
        live_key = self._keys.user(room.creator_id).live_room
        if await self._redis.get(live_key) == room_id:
            await self._redis.delete(live_key)
        await self._redis.zrem(self._keys.live_rooms, room_id)
        return await self.get(room_id)

    async def summary(self, room_id: str, user_id: str, is_admin: bool, now_ms: int) -> dict[str, Any]:
        """The live's summary for its creator (or an admin), live or ended: its figures
        (``_room_summary.lua``) and the diamonds its creator was credited for it."""
        room = await self.owned(room_id, user_id, is_admin, "read its summary")
        return await self.summary_of(room, now_ms)

    async def summary_of(self, room: Room, now_ms: int) -> dict[str, Any]:
        """The summary of a room already read (and its reader's right to it checked)."""
        room_id = room.room_id
        reply: list[Any] = await self._runner.call(
            ROOM_SUMMARY, *room_summary_arguments(self._keys.room(room_id))
        )
        outcome(ROOM_SUMMARY, reply, ("ok",), room_refusals(room_id))
        diamonds = await self._redis.hget(self._keys.user(room.creator_id).lives, room_id)
        coins, likes, gifts, gifters, new_followers = (int(n) for n in reply[1:6])
        top = reply[6:]
        ended = room.ended_ms
        return {
            "room_id": room_id,
            "title": room.title,
            "started_ms": room.created_ms,
            "ended_ms": ended,
            "duration_ms": max((now_ms if ended is None else ended) - room.created_ms, 0),
            "coins": coins,
            "diamonds": int(diamonds or 0),
            "gifts": gifts,
            "gifters": gifters,
            "top_gifters": [
                {"user_id": top[i], "name": top[i + 1], "coins": int(top[i + 2])}
                for i in range(0, len(top), 3)
            ],
            "likes": likes,
            "new_followers": new_followers,
        }

    async def set_goal(self, room_id: str, user_id: str, is_admin: bool, coins: int) -> RoomState:
        await self.owned(room_id, user_id, is_admin, "set its goal")
        reply = await self._runner.call(
            ROOM_GOAL, *room_goal_arguments(self._keys.room(room_id), coins, self._stream_len)
        )
        outcome(ROOM_GOAL, reply, ("ok",), room_refusals(room_id))
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
        calls: list[Call] = []
        for room_id in ids:
            calls += [
                Call.command("HGETALL", self._keys.room(room_id).info),
                self._state_call(room_id, "", -1),
            ]
        replies = await self._runner.pipeline(calls)
        rooms = []
        for i, room_id in enumerate(ids):
            raw, state = replies[2 * i], RoomState.from_reply(replies[2 * i + 1])
            if raw and state is not None and raw.get("state") == "live":
                rooms.append((room_from_hash(room_id, raw), state))
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
        return self._batch.call(
            ROOM_GIFT,
            *room_gift_arguments(
                self._keys.room(credit.room_id),
                credit,
                sender_name=sender_name,
                streakable=streakable,
                balance=balance,
                combo_window_ms=combo_window_ms,
                stream_len=self._stream_len,
            ),
            lambda reply: Published(
                status=reply[0], combo=int(reply[1]), ts=int(reply[2]), battle_id=reply[3] or None
            ),
        )

    async def expire_combo(self, room_id: str, sender_id: str, last_ts: int, window_ms: int) -> int:
        """1: closed now; 0: already closed or continued; -1: its window has not passed yet."""
        result: int = await self._runner.call(
            COMBO_EXPIRE,
            *combo_expire_arguments(
                self._keys.room(room_id), sender_id, last_ts, window_ms, self._stream_len
            ),
        )
        return result

    def _state_call(self, room_id: str, node: str, viewers: int, ttl_ms: int = 0) -> Call:
        return Call(ROOM_STATE, *room_state_arguments(self._keys.room(room_id), node, viewers, ttl_ms))

    async def state(self, room_id: str) -> RoomState | None:
        return (await self.states([(room_id, -1)], "", 0))[0]

    async def states(
        self, reports: Sequence[tuple[str, int]], node: str, ttl_ms: int
    ) -> list[RoomState | None]:
        """Report this node's viewers in each room (-1: only read) and read every room's state."""
        replies = await self._runner.pipeline(
            [self._state_call(room_id, node, viewers, ttl_ms) for room_id, viewers in reports]
        )
        return [RoomState.from_reply(reply) for reply in replies]

    async def snapshot(self, room_id: str, recent: int) -> tuple[Room, RoomState, str, list[StreamEntry]]:
        """The room, its state, the stream's last offset and its last ``recent`` entries."""
        keys = self._keys.room(room_id)
        raw, state_reply, entries = await self._runner.pipeline(
            [
                Call.command("HGETALL", keys.info),
                self._state_call(room_id, "", -1),
                Call.command("XREVRANGE", keys.events, "+", "-", "COUNT", recent),
            ]
        )
        room = room_from_hash(room_id, raw)
        state = RoomState.from_reply(state_reply)
        assert state is not None
        entries.reverse()
        offset = entries[-1][0] if entries else ZERO_OFFSET
        return room, state, offset, entries

    @property
    def reads_block(self) -> bool:
        """Whether ``read`` waits for new entries (one engine) or answers at once (a cluster)."""
        return self._wakeups is None

    async def read(
        self,
        cursors: dict[str, str],
        block_ms: int | None,
        count: int,
        serving: Collection[str] | None = None,
    ) -> list[tuple[str, list[StreamEntry]]]:
        """New entries after each room's cursor, waiting up to ``block_ms`` if there are none
        (on a cluster: the rooms woken since they were last read, without waiting).
        ``serving`` is every room the process serves, when ``cursors`` names only some."""
        if self._wakeups is not None:
            due = await self._wakeups.due(cursors if serving is None else serving, cursors)
            cursors = {room_id: offset for room_id, offset in cursors.items() if room_id in due}
            if not cursors:
                return []
        streams = {self._keys.room(room_id).events: offset for room_id, offset in cursors.items()}
        ids = {self._keys.room(room_id).events: room_id for room_id in cursors}
        read = [
            (ids[key], entries)
            for key, entries in await self._topology.read_streams(streams, count, block_ms)
        ]
        if self._wakeups is not None:
            for room_id, entries in read:
                if len(entries) >= count:
                    self._wakeups.wake(room_id)  # more to read: next tick, woken or not
        return read

    async def read_with_states(
        self,
        cursors: dict[str, str],
        count: int,
        reports: Sequence[tuple[str, int]],
        node: str,
        ttl_ms: int,
        also: Sequence[Call] = (),
    ) -> tuple[list[tuple[str, list[StreamEntry]]], list[RoomState | None], list[Any]]:
        """``read`` without waiting, then ``states`` of ``reports`` and the calls ``also``
        (their raw replies), each read after the entries: in one round trip on one engine,
        in two on a cluster."""
        after = [*(self._state_call(room_id, node, viewers, ttl_ms) for room_id, viewers in reports), *also]
        if self._wakeups is not None or not cursors or not after:
            read = await self.read(cursors, None, count) if cursors else []
            replies = await self._runner.pipeline(after) if after else []
        else:
            keys = {self._keys.room(room_id).events: room_id for room_id in cursors}
            streams, *replies = await self._runner.pipeline(
                [Call.command("XREAD", "COUNT", count, "STREAMS", *keys, *cursors.values()), *after]
            )
            read = [(keys[key], entries) for key, entries in streams or []]
        states = [RoomState.from_reply(reply) for reply in replies[: len(reports)]]
        return read, states, replies[len(reports) :]

    async def aclose(self) -> None:
        if self._wakeups is not None:
            await self._wakeups.aclose()

    async def page(
        self, room_id: str, after: str, until: str, count: int
    ) -> tuple[list[StreamEntry], StreamWindow]:
        """The first ``count`` entries with offsets in (``after``, ``until``], oldest first,
        and the stream's window just after they were read, in one round trip.

        Trimming only ever drops the oldest entries, so if that window still covers
        ``after``, nothing after it was trimmed before the read either: the page is exact.
        """
        keys = self._keys.room(room_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(keys.events, min=f"({after}", max=until, count=count)
            pipe.exists(keys.events)
            pipe.xinfo_stream(keys.events)
            pipe.hget(keys.info, DELETED)
            entries, exists, info, deleted = await pipe.execute(raise_on_error=False)
        if isinstance(entries, Exception):
            raise entries
        return entries, self._window(exists, info, deleted)

    async def window(self, room_id: str) -> StreamWindow:
        keys = self._keys.room(room_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.events)
            pipe.xinfo_stream(keys.events)
            pipe.hget(keys.info, DELETED)
            exists, info, deleted = await pipe.execute(raise_on_error=False)
        return self._window(exists, info, deleted)

    @staticmethod
    def _window(
        exists: int | Exception, info: dict[str, Any] | Exception, deleted: str | Exception | None
    ) -> StreamWindow:
        """The window ``XINFO STREAM`` describes (an error if the stream does not exist);
        ``deleted`` counts the entries deleted from the middle of the stream (deleted chat
        messages), which are not trimmed ones."""
        if isinstance(exists, Exception):
            raise exists
        if not exists:
            return StreamWindow(first=(0, 0), last=(0, 0), trimmed=False)
        if isinstance(info, Exception):
            raise info
        if isinstance(deleted, Exception):
            raise deleted
        first = info.get("first-entry")
        return StreamWindow(
            first=parse_offset(first[0]) if first else (0, 0),
            last=parse_offset(str(info["last-generated-id"])),
            trimmed=int(info["entries-added"]) - int(deleted or 0) > int(info["length"]),
        )


def room_from_hash(room_id: str, raw: dict[str, str]) -> Room:
    """The room a room hash (``{r:R}:room``) holds, or ``NotFound`` for an empty one."""
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
        battle_id=raw.get("battle"),
    )


def room_refusals(room_id: str) -> Refusals:
    """The refusals of a script that changes a live room (``room_goal.lua``, ``room_share.lua``,
    ``chat_post.lua``)."""
    return {
        "missing": lambda _: NotFound(f"no room {room_id!r}", code="room_not_found"),
        "ended": lambda _: Conflict(f"room {room_id!r} has ended", code="room_ended"),
    }


def room_end_arguments(room: RoomKeys, stream_len: int) -> Arguments:
    """KEYS and ARGV of ``room_end.lua``."""
    return (
        [
            room.info,
            room.events,
            room.names,
            room.combos,
            room.top,
            room.published,
            room.presence,
            room.followed,
            room.shared,
        ],
        [stream_len, ENDED_ROOM_RETENTION_S, room.wake],
    )


def room_summary_arguments(room: RoomKeys) -> Arguments:
    """KEYS and ARGV of ``room_summary.lua``."""
    return [room.info, room.top, room.names, room.published, room.followed], []


def room_goal_arguments(room: RoomKeys, coins: int, stream_len: int) -> Arguments:
    """KEYS and ARGV of ``room_goal.lua``."""
    return [room.info, room.events], [coins, stream_len, room.wake]


def room_gift_arguments(
    room: RoomKeys,
    credit: CreatorCredit,
    *,
    sender_name: str,
    streakable: bool,
    balance: int | None,
    combo_window_ms: int,
    stream_len: int,
) -> Arguments:
    """KEYS and ARGV of ``room_gift.lua``."""
    return (
        [
            room.info,
            room.events,
            room.top,
            room.names,
            room.combos,
            room.published,
            room.battles,
            room.battle_ends,
        ],
        [
            credit.event_id,
            credit.sender_id,
            sender_name,
            credit.gift_id,
            credit.count,
            credit.coins,
            1 if streakable else 0,
            combo_window_ms,
            stream_len,
            "" if balance is None else balance,
            room.wake,
            "" if credit.debit_ms is None else credit.debit_ms,
        ],
    )


def combo_expire_arguments(
    room: RoomKeys, sender_id: str, last_ts: int, window_ms: int, stream_len: int
) -> Arguments:
    """KEYS and ARGV of ``combo_expire.lua``."""
    return [room.events, room.names, room.combos], [sender_id, last_ts, window_ms, stream_len, room.wake]


def room_state_arguments(room: RoomKeys, node: str, viewers: int, ttl_ms: int) -> Arguments:
    """KEYS and ARGV of ``room_state.lua``: report ``viewers`` on ``node`` (-1: only read)."""
    return [room.info, room.top, room.names, room.presence], [node, viewers, ttl_ms, LEADERBOARD_SIZE]
