"""Overlay tokens: one per creator, read-only, regenerable, for a streamer's OBS overlay.

The token is the overlay's only credential: it lets a page watch the creator's live room
and nothing else. Regenerating it removes the old token's pointer, so the old URL stops
working at its next connection, and closes the overlays open with it at once: an
``overlay_revoked`` marker in the live room's log (``room_ban.lua``), which every hub process
reading the room acts on (error ``overlay_revoked``, close 4401). The marker names the old
token by its fingerprint, never by the token itself.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from redis.asyncio import Redis

from server.errors import Unauthorized
from server.keys import KeySchema
from server.store.moderation import room_ban_arguments
from server.store.scripts import ROOM_BAN, ScriptRunner

OVERLAY_REVOKED = "overlay_revoked"

# What token_urlsafe(24) makes; anything else is refused before it reaches a key.
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def fingerprint(token: str) -> str:
    """What names a token where the token itself must not appear (the room's log)."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def overlay_revoked_error() -> Unauthorized:
    return Unauthorized(
        "this overlay's token was regenerated: open the overlay's new URL", code=OVERLAY_REVOKED
    )


class OverlayTokens:
    def __init__(self, redis: Redis, keys: KeySchema, runner: ScriptRunner, stream_len: int) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner
        self._stream_len = stream_len

    async def current(self, creator_id: str) -> str:
        """The creator's token, made on first use."""
        key = self._keys.user(creator_id).overlay
        token: str | None = await self._redis.get(key)
        if token is not None:
            return token
        token = secrets.token_urlsafe(24)
        await self._redis.set(self._keys.overlay_owner(token), creator_id)
        if await self._redis.set(key, token, nx=True):
            return token
        made = str(await self._redis.get(key))
        if made == token:  # ours, set by this call sent again after its reply was lost
            return token
        # Another request made one first: use it, and drop ours.
        await self._redis.delete(self._keys.overlay_owner(token))
        return made

    async def regenerate(self, creator_id: str, live_room_id: str | None) -> str:
        """A new token for the creator; the old one stops working, and the overlays open
        with it in ``live_room_id`` (the creator's live room, if live) are closed."""
        key = self._keys.user(creator_id).overlay
        token = secrets.token_urlsafe(24)
        await self._redis.set(self._keys.overlay_owner(token), creator_id)
        before: str | None = await self._redis.get(key)
        old: str | None = await self._redis.getset(key, token)
        if old == token:  # this swap, sent again after its reply was lost: the old one is before it
            old = before
        if old is not None:
            await self._redis.delete(self._keys.overlay_owner(old))
            if live_room_id is not None:
                await self._runner.call(
                    ROOM_BAN,
                    *room_ban_arguments(
                        self._keys.room(live_room_id), OVERLAY_REVOKED, fingerprint(old), self._stream_len
                    ),
                )
        return token

    async def creator_of(self, token: str) -> str | None:
        """The creator a token belongs to; None for an unknown, replaced or malformed token."""
        if not TOKEN.match(token):
            return None
        creator: str | None = await self._redis.get(self._keys.overlay_owner(token))
        return creator
