"""The admin log: who changed what, when. One stream, appended by every admin action."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from server.keys import KeySchema
from server.store.streams import read_stream_page


class AdminLog:
    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        self._redis = redis
        self._keys = keys

    async def record(
        self, actor: str, action: str, target: str, details: dict[str, Any], now_ms: int
    ) -> None:
        await self._redis.xadd(
            self._keys.admin_log,
            {
                "actor": actor,
                "action": action,
                "target": target,
                "details": orjson.dumps(details),
                "ts": now_ms,
            },
        )

    async def page(self, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        entries, next_cursor = await read_stream_page(self._redis, self._keys.admin_log, cursor, limit)
        for entry in entries:
            entry["details"] = orjson.loads(entry["details"])
        return entries, next_cursor
