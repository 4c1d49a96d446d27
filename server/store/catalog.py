"""Admins' changes to the gift catalog, kept in the engine so every process sees them."""

from __future__ import annotations

import logging

import msgspec
import orjson
from redis.asyncio import Redis

from server.domain.catalog import Catalog, Gift
from server.keys import KeySchema

log = logging.getLogger(__name__)


class CatalogChanges:
    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        self._redis = redis
        self._keys = keys

    async def save(self, gift: Gift) -> int:
        """Store a new or changed gift and bump the version; returns the new version."""
        await self._redis.hset(self._keys.catalog, gift.id, msgspec.json.encode(gift))
        version: int = await self._redis.incr(self._keys.catalog_version)
        return version

    async def version(self) -> int:
        return int(await self._redis.get(self._keys.catalog_version) or 0)

    async def apply_to(self, catalog: Catalog) -> None:
        """Put every stored change in ``catalog``.

        A stored gift may have been written by a server of another version, so it is read
        tolerantly: fields this version does not know are ignored, fields it lacks keep the
        catalog's value (or the gift's default), and a gift that still cannot be read is
        logged and skipped, leaving the catalog's own version in place.
        """
        for gift_id, raw in (await self._redis.hgetall(self._keys.catalog)).items():
            current = catalog.gifts.get(gift_id)
            try:
                stored = orjson.loads(raw)
                if not isinstance(stored, dict):
                    raise ValueError(f"expected an object, got {type(stored).__name__}")
                gift = Gift.read({**(current.to_record() if current else {}), **stored, "id": gift_id})
            except ValueError as exc:
                log.warning("stored gift %r cannot be read, keeping the catalog's: %s", gift_id, exc)
                continue
            catalog.apply(gift)
