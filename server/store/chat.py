"""Chat in the engine: posting a message into its room, the live's recent messages, each
user's chat rate, and a creator's moderators and chat settings.

A post is one ``chat_post.lua`` call in the room's slot (idempotency record, slow mode, the
room event); the sender's rate bucket is in the sender's slot and the creator's rules in the
creator's, so each is its own call (``ChatService.post`` says in which order). A post the
script refuses is raised as the same error the checks before it raise (``mismatch``,
``slow_mode``, the room's refusals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from server.domain.chat import MAX_SLOW_MODE_S, TOP_GIFTERS, ChatSettings
from server.errors import Conflict, RateLimited
from server.keys import KeySchema, RoomKeys, UserKeys
from server.store.batch import ScriptBatch
from server.store.records import Room
from server.store.rooms import ENDED_ROOM_RETENTION_S, room_from_hash, room_refusals
from server.store.scripts import CHAT_POST, IP_BUCKET, Arguments, Call, Refusals, ScriptRunner, outcome
from server.store.topology import StreamEntry

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
    # What is left of the sender's mute in this live, milliseconds (0: not muted).
    mute_left_ms: int = 0


@dataclass(frozen=True)
class Message:
    """A chat message to post, as checked by ``ChatService.post``."""

    event_id: str  # used if this is a new message
    sender_id: str
    sender_name: str
    text: str  # sanitised and masked
    badges: list[str]
    client_id: str
    fingerprint: str  # of the request the client id is bound to
    record_ttl_s: int  # how long the idempotency record lives
    slow_mode_ms: int  # 0: off, or the sender is exempt


@dataclass(frozen=True)
class Posted:
    event_id: str
    replayed: bool  # the same client id and text were posted before: nothing posted now


class Chat:
    def __init__(
        self, redis: Redis, keys: KeySchema, runner: ScriptRunner, batch: ScriptBatch, stream_len: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner
        self._batch = batch
        self._stream_len = stream_len

    async def room(self, room_id: str, sender_id: str, client_id: str) -> ChatRoom:
        """The room, its top gifters, the message's idempotency record and the sender's slow
        mode marker and mute, as they are now."""
        keys = self._keys.room(room_id)
        raw, top, record, left, muted = await self._runner.pipeline(
            [
                Call.command("HGETALL", keys.info),
                Call.command("ZREVRANGE", keys.top, 0, TOP_GIFTERS - 1),
                Call.command("GET", keys.chat_message(sender_id, client_id)),
                Call.command("PTTL", keys.chat_slow(sender_id)),
                Call.command("PTTL", keys.mute(sender_id)),
            ]
        )
        earlier = None
        if record is not None:
            fingerprint, _, event_id = record.partition("|")
            earlier = (fingerprint, event_id)
        return ChatRoom(
            room_from_hash(room_id, raw), list(top), earlier, max(0, int(left)), max(0, int(muted))
        )

    async def rules(self, creator_id: str, sender_id: str) -> tuple[ChatSettings, bool, bool]:
        """The creator's chat settings, whether the sender is one of their moderators, and
        whether the creator banned them."""
        keys = self._keys.user(creator_id)
        raw, moderator, banned = await self._runner.pipeline(
            [
                Call.command("HGETALL", keys.chat_settings),
                Call.command("SISMEMBER", keys.moderators, sender_id),
                Call.command("SISMEMBER", keys.bans, sender_id),
            ]
        )
        return self._settings(raw), bool(moderator), bool(banned)

    async def take_token(self, user_id: str, rate_per_s: float, burst: int) -> None:
        """Take one token from the user's chat bucket (``ip_bucket.lua``), or ``RateLimited``
        with the wait, having taken nothing."""
        reply: list[Any] = await self._batch.call(
            IP_BUCKET, *chat_bucket_arguments(self._keys.user(user_id), rate_per_s, burst)
        )
        if int(reply[0]) == 1:
            return
        wait_ms = int(reply[1])
        raise RateLimited(
            f"too many chat messages: at most {rate_per_s:g} a second (bursts of {burst}); "
            f"retry in {wait_ms} ms",
            retry_after_ms=wait_ms,
        )

    async def post(self, room_id: str, message: Message) -> Posted:
        """Post the message (``chat_post.lua``), or raise its refusal."""
        reply: list[Any] = await self._batch.call(
            CHAT_POST, *chat_post_arguments(self._keys.room(room_id), message, self._stream_len)
        )
        status = outcome(CHAT_POST, reply, ("ok", "replay"), _post_refusals(room_id, message.slow_mode_ms))[0]
        # A replay naming this message's new event id is this call's own first run, sent again
        # by the engine client after its reply was lost: posted now, not before.
        return Posted(str(reply[1]), replayed=status == "replay" and reply[1] != message.event_id)

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


def mismatch() -> Conflict:
    """The refusal of a client id already bound to another message."""
    return Conflict(
        "this client_id was already used for another message; use a new one for each message",
        code="idempotency_mismatch",
    )


def slow_mode(slow_mode_s: int, wait_ms: int) -> RateLimited:
    """The refusal of a message slow mode holds back for ``wait_ms``."""
    return RateLimited(
        f"slow mode: one message every {slow_mode_s} s; retry in {wait_ms} ms",
        retry_after_ms=wait_ms,
        code="slow_mode",
    )


def muted(wait_ms: int) -> RateLimited:
    """The refusal of a message from a sender muted in this live for ``wait_ms`` more."""
    return RateLimited(
        f"a moderator muted you in this live; retry in {wait_ms} ms", retry_after_ms=wait_ms, code="muted"
    )


def _post_refusals(room_id: str, slow_mode_ms: int) -> Refusals:
    return {
        **room_refusals(room_id),
        "mismatch": lambda _: mismatch(),
        "slow": lambda reply: slow_mode(slow_mode_ms // 1000, int(reply[1])),
        "muted": lambda reply: muted(int(reply[1])),
    }


def chat_bucket_arguments(user: UserKeys, rate_per_s: float, burst: int) -> Arguments:
    """KEYS and ARGV of ``ip_bucket.lua`` for the user's chat bucket."""
    return [user.chat_rate], [repr(float(rate_per_s)), burst]


def chat_post_arguments(room: RoomKeys, message: Message, stream_len: int) -> Arguments:
    """KEYS and ARGV of ``chat_post.lua``."""
    m = message
    return (
        [
            room.info,
            room.events,
            room.chat,
            room.chat_message(m.sender_id, m.client_id),
            room.chat_slow(m.sender_id),
            room.chat_ids,
            room.mute(m.sender_id),
            room.chat_ids_old,
        ],
        [
            m.event_id,
            m.sender_id,
            m.sender_name,
            m.text,
            ",".join(m.badges),
            m.fingerprint,
            m.record_ttl_s,
            m.slow_mode_ms,
            MAX_SLOW_MODE_S * 1000,
            stream_len,
            RECENT_CHAT,
            ENDED_ROOM_RETENTION_S,
            room.wake,
            stream_len,
        ],
    )
