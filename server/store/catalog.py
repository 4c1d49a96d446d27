"""Admins' changes to the gift catalog, kept in the engine so every process sees them."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from server.domain.catalog import Catalog, Gift
from server.keys import KeySchema


class CatalogChanges:
    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        self._redis = redis
        self._keys = keys

    async def save(self, gift: Gift) -> int:
        """Store a new or changed gift and bump the version; returns the new version."""
        await self._redis.hset(self._keys.catalog, gift.id, orjson.dumps(gift.to_record()))
        version: int = await self._redis.incr(self._keys.catalog_version)
        return version

    async def version(self) -> int:
        return int(await self._redis.get(self._keys.catalog_version) or 0)

    async def apply_to(self, catalog: Catalog) -> None:
        """Put every stored change in ``catalog``."""
        for raw in (await self._redis.hgetall(self._keys.catalog)).values():
            catalog.apply(Gift(**orjson.loads(raw)))
