"""Chat in the engine: posting a message into its room, the live's recent messages, each
user's chat rate, and a creator's moderators and chat settings.

A post is one ``chat_post.lua`` call in the room's slot (idempotency record, slow mode, the
room event); the sender's rate bucket is in the sender's slot and the creator's rules in the
creator's, so each is its own call (``ChatService.post`` says in which order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from server.domain.chat import MAX_SLOW_MODE_S, TOP_GIFTERS, ChatSettings
from server.errors import RateLimited
from server.keys import KeySchema
from server.store.batch import ScriptBatch
from server.store.records import Room
from server.store.rooms import ENDED_ROOM_RETENTION_S, Rooms, StreamEntry
from server.store.scripts import Scripts, run_pipeline

# The chat messages a welcome carries.
RECENT_CHAT = 50


@dataclass(frozen=True)
class ChatRoom:
    """What a post is checked against in the room's slot, read in one round trip."""

    room: Room
    top_gifters: list[str]
    # The fingerprint and event id an earlier message with the same client id was posted as.
    earlier: tuple[str, str] | None
    # What is left of the sender's slow mode marker, milliseconds (0: none).
    slow_marker_left_ms: int


@dataclass(frozen=True)
class Posted:
    status: str  # "ok", "replay", "mismatch", "ended" or "slow"
    event_id: str = ""
    retry_after_ms: int = 0


class Chat:
    def __init__(
        self, redis: Redis, keys: KeySchema, scripts: Scripts, batch: ScriptBatch, stream_len: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._batch = batch
        self._stream_len = stream_len

    async def room(self, room_id: str, sender_id: str, client_id: str) -> ChatRoom:
        """The room, its top gifters, the message's idempotency record and the sender's slow
        mode marker, as they are now."""
        keys = self._keys.room(room_id)

        def build(pipe: Pipeline) -> None:
            pipe.hgetall(keys.info)
            pipe.zrevrange(keys.top, 0, TOP_GIFTERS - 1)
            pipe.get(keys.chat_message(sender_id, client_id))
            pipe.pttl(keys.chat_slow(sender_id))

        raw, top, record, left = await run_pipeline(self._redis, build, [])
        earlier = None
        if record is not None:
            fingerprint, _, event_id = record.partition("|")
            earlier = (fingerprint, event_id)
        return ChatRoom(Rooms._room(room_id, raw), list(top), earlier, max(0, int(left)))

    async def rules(self, creator_id: str, sender_id: str) -> tuple[ChatSettings, bool]:
        """The creator's chat settings, and whether the sender is one of their moderators."""
        keys = self._keys.user(creator_id)

        def build(pipe: Pipeline) -> None:
            pipe.hgetall(keys.chat_settings)
            pipe.sismember(keys.moderators, sender_id)

        raw, moderator = await run_pipeline(self._redis, build, [])
        return self._settings(raw), bool(moderator)

    async def take_token(self, user_id: str, rate_per_s: float, burst: int) -> None:
        """Take one token from the user's chat bucket (``ip_bucket.lua``), or ``RateLimited``
        with the wait, having taken nothing."""
        reply: list[Any] = await self._batch.call(
            self._scripts.ip_bucket, [self._keys.user(user_id).chat_rate], [repr(float(rate_per_s)), burst]
        )
        if int(reply[0]) == 1:
            return
        wait_ms = int(reply[1])
        raise RateLimited(
            f"too many chat messages: at most {rate_per_s:g} a second (bursts of {burst}); "
            f"retry in {wait_ms} ms",
            retry_after_ms=wait_ms,
        )

    async def post(
        self,
        room_id: str,
        *,
        event_id: str,
        sender_id: str,
        sender_name: str,
        text: str,
        badges: list[str],
        client_id: str,
        fingerprint: str,
        record_ttl_s: int,
        slow_mode_ms: int,
    ) -> Posted:
        """Post the message (``chat_post.lua``); what became of it."""
        keys = self._keys.room(room_id)
        reply: list[Any] = await self._batch.call(
            self._scripts.chat_post,
            [
                keys.info,
                keys.events,
                keys.chat,
                keys.chat_message(sender_id, client_id),
                keys.chat_slow(sender_id),
            ],
            [
                event_id,
                sender_id,
                sender_name,
                text,
                ",".join(badges),
                fingerprint,
                record_ttl_s,
                slow_mode_ms,
                MAX_SLOW_MODE_S * 1000,
                self._stream_len,
                RECENT_CHAT,
                ENDED_ROOM_RETENTION_S,
                keys.wake,
            ],
        )
        status = str(reply[0])
        if status in ("ok", "replay"):
            return Posted(status, event_id=str(reply[1]))
        if status == "slow":
            return Posted(status, retry_after_ms=int(reply[1]))
        return Posted(status)

    async def recent(self, room_id: str) -> list[StreamEntry]:
        """The live's last chat messages, oldest first, each under its offset in the room's log."""
        entries: list[StreamEntry] = await self._redis.xrevrange(
            self._keys.room(room_id).chat, count=RECENT_CHAT
        )
        entries.reverse()
        return entries

    # -- a creator's chat settings and moderators -----------------------------------------

    async def settings(self, creator_id: str) -> ChatSettings:
        return self._settings(await self._redis.hgetall(self._keys.user(creator_id).chat_settings))

    async def set_settings(self, creator_id: str, settings: ChatSettings) -> None:
        await self._redis.hset(
            self._keys.user(creator_id).chat_settings,
            mapping={
                "slow_mode_s": settings.slow_mode_s,
                "blocked_words": orjson.dumps(settings.blocked_words),
                "allow_links": 1 if settings.allow_links else 0,
            },
        )

    @staticmethod
    def _settings(raw: dict[str, str]) -> ChatSettings:
        if not raw:
            return ChatSettings()
        return ChatSettings(
            slow_mode_s=int(raw.get("slow_mode_s", 0)),
            blocked_words=list(orjson.loads(raw.get("blocked_words", "[]"))),
            allow_links=raw.get("allow_links") == "1",
        )

    async def moderators(self, creator_id: str) -> list[str]:
        return sorted(await self._redis.smembers(self._keys.user(creator_id).moderators))

    async def add_moderator(self, creator_id: str, user_id: str) -> bool:
        """Appoint a moderator; True if they were not one already."""
        return bool(await self._redis.sadd(self._keys.user(creator_id).moderators, user_id))

    async def remove_moderator(self, creator_id: str, user_id: str) -> bool:
        """Remove a moderator; True if they were one."""
        return bool(await self._redis.srem(self._keys.user(creator_id).moderators, user_id))
