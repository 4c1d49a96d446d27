"""Moderation in the engine: who may moderate a room, deleting chat messages, mutes in a
live, a creator's bans and the moderation log.

A ban is kept twice: in the creator's slot (``bans``, read by chat and socket connects with
the creator's other rules) and in the banned user's slot (``banned_by``, read by the gift's
debit script, ``gift_debit.lua``, so a ban costs a gift no read of its own). The user's copy
is written first: a ban interrupted between the two writes is already refused on the gift
path, and the same ``PUT`` again completes it. Each live room's hubs learn of it from a
``ban`` marker in the room's log (``room_ban.lua``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from server.errors import Forbidden, NotFound
from server.keys import KeySchema, RoomKeys
from server.store.batch import ScriptBatch
from server.store.records import Room
from server.store.rooms import room_from_hash
from server.store.scripts import CHAT_DELETE, ROOM_BAN, Arguments, Call, ScriptRunner, outcome
from server.store.streams import read_stream_page

# The moderation log keeps about this many actions per creator.
LOG_LEN = 10_000

DELETE = "delete"
MUTE = "mute"
UNMUTE = "unmute"
BAN = "ban"
UNBAN = "unban"
ADD_MODERATOR = "add_moderator"
REMOVE_MODERATOR = "remove_moderator"


@dataclass(frozen=True)
class Authority:
    """A room, and who in it the actor and the target are, read at the moment of an action."""

    room: Room
    actor_is_moderator: bool
    target_is_moderator: bool


def banned_error() -> Forbidden:
    return Forbidden("the creator has banned you from their lives", code="banned")


def log_entry(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A moderation log entry as the API shows it."""
    entry: dict[str, Any] = {
        "action": fields.get("a", ""),
        "actor": fields.get("by", ""),
        "target": fields.get("u", ""),
        "room_id": fields.get("r") or None,
        "ts": int(entry_id.partition("-")[0]),
    }
    if "e" in fields:
        entry["event_id"] = fields["e"]
    if "s" in fields:
        entry["seconds"] = int(fields["s"])
    return entry


class Moderation:
    def __init__(
        self, redis: Redis, keys: KeySchema, runner: ScriptRunner, batch: ScriptBatch, stream_len: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner
        self._batch = batch
        self._stream_len = stream_len

    async def authority(self, room_id: str, actor_id: str, target_id: str | None) -> Authority:
        """The room and whether the actor and the target are its creator's moderators, read
        now: a moderator removed a moment ago is no longer one."""
        room = room_from_hash(room_id, await self._redis.hgetall(self._keys.room(room_id).info))
        moderators = self._keys.user(room.creator_id).moderators
        actor, target = await self._runner.pipeline(
            [
                Call.command("SISMEMBER", moderators, actor_id),
                Call.command("SISMEMBER", moderators, target_id or actor_id),
            ]
        )
        return Authority(room, bool(actor), target_id is not None and bool(target))

    def is_banned(self, creator_id: str, user_id: str) -> asyncio.Future[bool]:
        """Whether the creator banned the user: queued on the group commit (``store.batch``),
        so that the connections joining in one turn of the event loop share one round trip."""
        return self._batch.read(("SISMEMBER", self._keys.user(creator_id).bans, user_id), bool)

    async def bans(self, creator_id: str) -> list[str]:
        return sorted(await self._redis.smembers(self._keys.user(creator_id).bans))

    async def delete_chat(self, room_id: str, event_id: str) -> str | None:
        """Delete a chat message of the room (``chat_delete.lua``): its sender's id if deleted
        now ("" once the log no longer holds it), None if it was before, ``NotFound`` if the
        live never had it."""
        keys = self._keys.room(room_id)
        reply: list[Any] = await self._runner.call(
            CHAT_DELETE, *chat_delete_arguments(keys, event_id, self._stream_len)
        )
        refusals = {
            "missing": lambda _: NotFound(
                f"no chat message {event_id!r} in this live", code="message_not_found"
            )
        }
        status = outcome(CHAT_DELETE, reply, ("deleted", "again"), refusals)[0]
        return str(reply[1]) if status == "deleted" else None

    async def mute(self, room_id: str, user_id: str, seconds: int) -> None:
        await self._redis.set(self._keys.room(room_id).mute(user_id), "1", px=seconds * 1000)

    async def unmute(self, room_id: str, user_id: str) -> None:
        await self._redis.delete(self._keys.room(room_id).mute(user_id))

    async def ban(self, room: Room, actor_id: str, user_id: str) -> None:
        """Ban the user from all of the room's creator's lives: refused from now on, and the
        hubs of the live room close their connections. A banned moderator is one no longer."""
        creator = self._keys.user(room.creator_id)
        await self._redis.sadd(self._keys.user(user_id).banned_by, room.creator_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(creator.bans, user_id)
            pipe.srem(creator.moderators, user_id)
            self._log_into(pipe, room.creator_id, BAN, actor_id, user_id, room.room_id)
            await pipe.execute()
        await self._mark(room.room_id, BAN, user_id)

    async def unban(self, room: Room, actor_id: str, user_id: str) -> None:
        creator = self._keys.user(room.creator_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.srem(creator.bans, user_id)
            self._log_into(pipe, room.creator_id, UNBAN, actor_id, user_id, room.room_id)
            await pipe.execute()
        await self._redis.srem(self._keys.user(user_id).banned_by, room.creator_id)
        await self._mark(room.room_id, UNBAN, user_id)

    async def _mark(self, room_id: str, kind: str, user_id: str) -> None:
        await self._runner.call(
            ROOM_BAN, *room_ban_arguments(self._keys.room(room_id), kind, user_id, self._stream_len)
        )

    # -- the moderation log --------------------------------------------------------------

    async def log(
        self,
        creator_id: str,
        action: str,
        actor_id: str,
        target: str,
        room_id: str | None = None,
        *,
        event_id: str | None = None,
        seconds: int | None = None,
    ) -> None:
        """Append one action to the creator's moderation log."""
        async with self._redis.pipeline(transaction=False) as pipe:
            self._log_into(
                pipe, creator_id, action, actor_id, target, room_id, event_id=event_id, seconds=seconds
            )
            await pipe.execute()

    def _log_into(
        self,
        pipe: Any,
        creator_id: str,
        action: str,
        actor_id: str,
        target: str,
        room_id: str | None = None,
        *,
        event_id: str | None = None,
        seconds: int | None = None,
    ) -> None:
        fields: dict[str, str | int] = {"a": action, "by": actor_id, "u": target, "r": room_id or ""}
        if event_id is not None:
            fields["e"] = event_id
        if seconds is not None:
            fields["s"] = seconds
        pipe.xadd(self._keys.user(creator_id).moderation_log, fields, maxlen=LOG_LEN, approximate=True)

    async def read_log(
        self, creator_id: str, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the creator's moderation log, newest first, and the next page's cursor."""
        return await read_stream_page(
            self._redis, self._keys.user(creator_id).moderation_log, cursor, limit, log_entry
        )


def chat_delete_arguments(room: RoomKeys, event_id: str, stream_len: int) -> Arguments:
    """KEYS and ARGV of ``chat_delete.lua``."""
    return [room.info, room.events, room.chat, room.chat_ids, room.chat_ids_old], [
        event_id,
        stream_len,
        room.wake,
    ]


def room_ban_arguments(room: RoomKeys, kind: str, subject: str, stream_len: int) -> Arguments:
    """KEYS and ARGV of ``room_ban.lua``: a ``ban`` or ``unban`` marker naming a user, or an
    ``overlay_revoked`` one naming a token's fingerprint (``store.overlays``)."""
    return [room.info, room.events], [kind, subject, stream_len, room.wake]
