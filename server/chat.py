"""The chat path, shared by HTTP and WebSocket: check the text and the creator's rules, take
the sender's rate token, post the message into the room's log.

The order of the engine calls, and what a refusal costs:

1. one round trip to the room's slot reads the room, its top gifters, the message's
   idempotency record, the sender's slow mode marker and mute: a resend is answered here with
   its first answer (or ``idempotency_mismatch``), and a message the room has ended for, or
   that a mute or slow mode holds back, is refused;
2. one round trip to the creator's slot reads the chat settings and whether the sender is a
   moderator or banned: a banned sender, links and blocked words are refused (the text rules
   were checked before any call);
3. the sender's chat rate bucket (``GIFTING_CHAT_RATE``/s, bursts of ``GIFTING_CHAT_BURST``,
   in the sender's slot) gives a token, or refuses ``rate_limited`` having taken none;
4. ``chat_post.lua`` posts in the room's slot, checking the record, the room, the mute and
   slow mode again atomically.

So every refusal before step 3 costs no token. A message step 4 refuses after all (a resend
racing its first send, the live ending or a slow mode wait starting between steps 1 and 4)
has cost one token; nothing is posted then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server import logs
from server.domain.chat import (
    MAX_SLOW_MODE_S,
    ChatRequest,
    blocked_word_in,
    has_link,
    masked,
    sanitised,
)
from server.domain.ids import new_id
from server.errors import Conflict, Forbidden
from server.settings import Settings
from server.store import Store
from server.store.chat import Message, mismatch, muted, slow_mode
from server.store.moderation import banned_error

CREATOR = "creator"
MODERATOR = "moderator"
TOP_GIFTER = "top_gifter"


@dataclass(frozen=True)
class ChatOutcome:
    client_id: str
    event_id: str
    replayed: bool

    def to_dict(self) -> dict[str, object]:
        return {"client_id": self.client_id, "event_id": self.event_id}


def slow_mode_wait_ms(slow_mode_ms: int, marker_left_ms: int) -> int:
    """How long a sender whose slow mode marker has ``marker_left_ms`` to live still waits
    (``chat_post.lua`` sets it for the longest slow mode on each message)."""
    if slow_mode_ms <= 0 or marker_left_ms <= 0:
        return 0
    return max(0, slow_mode_ms - (MAX_SLOW_MODE_S * 1000 - marker_left_ms))


def fingerprint(text: str) -> str:
    """What a client id is bound to: the message's text, normalised and trimmed."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class ChatService:
    store: Store
    settings: Settings
    name_of: Callable[[str], Awaitable[str]]

    async def post(
        self, sender_id: str, room_id: str, request: ChatRequest, *, sender_name: str | None = None
    ) -> ChatOutcome:
        """Post one chat message (see the module docstring for the order of the checks)."""
        logs.bind(sender=sender_id, room=room_id)
        text = sanitised(request.text)
        bound = fingerprint(text)
        chat = self.store.chat
        where = await chat.room(room_id, sender_id, request.client_id)
        if where.earlier is not None:
            return self._replay(request.client_id, bound, *where.earlier)
        room = where.room
        if not room.live:
            raise Conflict(f"room {room_id!r} has ended", code="room_ended")
        if where.mute_left_ms:
            raise muted(where.mute_left_ms)
        rules, moderator, banned = await chat.rules(room.creator_id, sender_id)
        if banned:
            raise banned_error()
        creator = sender_id == room.creator_id
        slow_mode_ms = 0 if creator or moderator else rules.slow_mode_s * 1000
        wait_ms = slow_mode_wait_ms(slow_mode_ms, where.slow_marker_left_ms)
        if wait_ms:
            raise slow_mode(rules.slow_mode_s, wait_ms)
        if not rules.allow_links and has_link(text):
            raise Forbidden("links are not allowed in this chat", code="links_not_allowed")
        if blocked_word_in(text, rules.blocked_words) is not None:
            raise Forbidden("the message holds a word the creator has blocked", code="message_blocked")
        badges = [CREATOR] if creator else []
        if moderator:
            badges.append(MODERATOR)
        if sender_id in where.top_gifters:
            badges.append(TOP_GIFTER)
        await chat.take_token(sender_id, self.settings.chat_rate_per_s, self.settings.chat_burst)
        posted = await chat.post(
            room_id,
            Message(
                event_id=new_id("c"),
                sender_id=sender_id,
                sender_name=sender_name or await self.name_of(sender_id),
                text=masked(text),
                badges=badges,
                client_id=request.client_id,
                fingerprint=bound,
                record_ttl_s=self.settings.idempotency_ttl_s,
                slow_mode_ms=slow_mode_ms,
            ),
        )
        if not posted.replayed:
            logs.bind(chat_event_id=posted.event_id)
        return ChatOutcome(request.client_id, posted.event_id, replayed=posted.replayed)

    @staticmethod
    def _replay(client_id: str, bound: str, earlier_bound: str, event_id: str) -> ChatOutcome:
        if earlier_bound != bound:
            raise mismatch()
        return ChatOutcome(client_id, event_id, replayed=True)
