"""A room's like total and the per-tick like and join tallies each hub process writes into
the room's slot (``room_likes.lua``): one script call per room and tick, never one per tap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from server.domain.likes import Tally
from server.keys import KeySchema, RoomKeys
from server.store.rooms import ENDED_ROOM_RETENTION_S
from server.store.scripts import ROOM_LIKES, Arguments, Call, ScriptRunner


@dataclass(frozen=True, slots=True)
class Written:
    """What ``room_likes.lua`` did with one tally."""

    status: str  # "ok", "dup" (written before) or "ended" (dropped: the room is not live)
    total: int  # the room's like total afterwards


class Likes:
    def __init__(self, redis: Redis, keys: KeySchema, runner: ScriptRunner, stream_len: int) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner
        self._stream_len = stream_len

    async def total(self, room_id: str) -> int:
        return int(await self._redis.hget(self._keys.room(room_id).info, "likes") or 0)

    async def write(self, node: str, tallies: Sequence[tuple[str, int, Tally]]) -> list[Written | Exception]:
        """Write each room's tally ``(room_id, seq, tally)`` of this tick, in one pipeline;
        a room whose call failed has the engine's error in its place (a connection's error
        is raised).

        A tally is written at most once per ``(node, seq)``: after an unknown outcome (a
        timeout) the caller sends the same one again, and a copy that had landed is a "dup".
        """
        calls = [
            Call(ROOM_LIKES, *room_likes_arguments(self._keys.room(room), node, seq, tally, self._stream_len))
            for room, seq, tally in tallies
        ]
        replies = await self._runner.execute(calls)
        return [
            reply if isinstance(reply, Exception) else Written(str(reply[0]), int(reply[1]))
            for reply in replies
        ]


def room_likes_arguments(room: RoomKeys, node: str, seq: int, tally: Tally, stream_len: int) -> Arguments:
    """KEYS and ARGV of ``room_likes.lua``: write ``tally``, sequence number ``seq`` of ``node``."""
    return (
        [room.info, room.events, room.tallies],
        [
            node,
            seq,
            tally.total_likes,
            orjson.dumps(tally.top()).decode(),
            tally.joins,
            orjson.dumps(list(tally.joiners.items())).decode(),
            stream_len,
            ENDED_ROOM_RETENTION_S,
            room.wake,
        ],
    )
