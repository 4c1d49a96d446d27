"""Creator earnings: the diamond credit for each gift, exactly once per gift event.

The credit arrives through the sender's outbox (see ``store.outbox``); the creator script's
per-event guard makes a second delivery of the same gift a no-op.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.keys import KeySchema
from server.store.records import CreatorCredit, Earnings
from server.store.scripts import Scripts
from server.store.streams import read_stream_page


class CreatorEarnings:
    def __init__(self, redis: Redis, keys: KeySchema, scripts: Scripts) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts

    async def get(self, creator_id: str) -> Earnings:
        raw = await self._redis.hmget(
            self._keys.user(creator_id).earnings, ["pending", "available", "withdrawn", "lifetime"]
        )
        pending, available, withdrawn, lifetime = (int(v or 0) for v in raw)
        return Earnings(pending=pending, available=available, withdrawn=withdrawn, lifetime=lifetime)

    async def ledger(
        self, creator_id: str, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await read_stream_page(self._redis, self._keys.user(creator_id).earnings_ledger, cursor, limit)

    async def credit(self, credit: CreatorCredit) -> bool:
        """Credit the creator's diamonds for one gift; True if credited now, False if already."""
        creator = self._keys.user(credit.creator_id)
        applied = await self._scripts.credit_creator(
            keys=[creator.credited, creator.earnings, creator.earnings_ledger],
            args=[
                credit.event_id,
                credit.diamonds,
                credit.coins,
                credit.sender_id,
                credit.room_id,
                credit.ts,
            ],
        )
        return bool(applied)
