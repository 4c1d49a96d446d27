"""A room's like total and the per-tick like and join tallies each hub process writes into
the room's slot (``room_likes.lua``): one script call per room and tick, never one per tap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from server.domain.likes import Tally
from server.keys import KeySchema
from server.store.rooms import ENDED_ROOM_RETENTION_S
from server.store.scripts import Scripts, queue_script, run_pipeline


@dataclass(frozen=True, slots=True)
class Written:
    """What ``room_likes.lua`` did with one tally."""

    status: str  # "ok", "dup" (written before) or "ended" (dropped: the room is not live)
    total: int  # the room's like total afterwards


class Likes:
    def __init__(self, redis: Redis, keys: KeySchema, scripts: Scripts, stream_len: int) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._stream_len = stream_len

    async def total(self, room_id: str) -> int:
        return int(await self._redis.hget(self._keys.room(room_id).info, "likes") or 0)

    async def write(self, node: str, tallies: Sequence[tuple[str, int, Tally]]) -> list[Written | Exception]:
        """Write each room's tally ``(room_id, seq, tally)`` of this tick, in one pipeline;
        a room whose call failed has the engine's error in its place.

        A tally is written at most once per ``(node, seq)``: after an unknown outcome (a
        timeout) the caller sends the same one again, and a copy that had landed is a "dup".
        That also makes the pipeline safe to send again when the script must be reloaded.
        """

        def build(pipe: Pipeline) -> None:
            for room_id, seq, tally in tallies:
                keys = self._keys.room(room_id)
                likes, top, joins, joiners = tally.script_args()
                queue_script(
                    pipe,
                    self._scripts.room_likes,
                    [keys.info, keys.events, keys.tallies],
                    [
                        node,
                        seq,
                        likes,
                        top,
                        joins,
                        joiners,
                        self._stream_len,
                        ENDED_ROOM_RETENTION_S,
                        keys.wake,
                    ],
                )

        replies = await run_pipeline(self._redis, build, [self._scripts.room_likes], errors=True)
        return [
            reply if isinstance(reply, Exception) else Written(str(reply[0]), int(reply[1]))
            for reply in replies
        ]
