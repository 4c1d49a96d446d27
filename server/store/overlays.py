"""Overlay tokens: one per creator, read-only, regenerable, for a streamer's OBS overlay.

The token is the overlay's only credential: it lets a page watch the creator's live room
and nothing else. Regenerating it removes the old token's pointer, so the old URL stops
working at its next connection.
"""

from __future__ import annotations

import re
import secrets

from redis.asyncio import Redis

from server.keys import KeySchema

# What token_urlsafe(24) makes; anything else is refused before it reaches a key.
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class OverlayTokens:
    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        self._redis = redis
        self._keys = keys

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
        # Another request made one first: use it, and drop ours.
        await self._redis.delete(self._keys.overlay_owner(token))
        return str(await self._redis.get(key))

    async def regenerate(self, creator_id: str) -> str:
        key = self._keys.user(creator_id).overlay
        token = secrets.token_urlsafe(24)
        await self._redis.set(self._keys.overlay_owner(token), creator_id)
        old: str | None = await self._redis.getset(key, token)
        if old is not None:
            await self._redis.delete(self._keys.overlay_owner(old))
        return token

    async def creator_of(self, token: str) -> str | None:
        """The creator a token belongs to; None for an unknown, replaced or malformed token."""
        if not TOKEN.match(token):
            return None
        creator: str | None = await self._redis.get(self._keys.overlay_owner(token))
        return creator
