"""Creator earnings: the diamond credit for each gift, and the outbox that guarantees it.

The debit script writes a ``CreatorCredit`` into the sender's outbox in the same atomic step
as the debit. ``apply`` credits the creator (idempotent per gift event) and then removes the
outbox entry. If the process dies in between, ``sweep`` finds the entry later and applies it;
the creator script's per-event guard makes a second application a no-op.
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

    async def apply(self, credit: CreatorCredit) -> bool:
        """Credit the creator for one gift and clear its outbox entry; True if credited now."""
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
        await self._redis.hdel(self._keys.user(credit.sender_id).outbox, credit.event_id)
        return bool(applied)

    async def pending_outbox(self, sender_id: str) -> list[CreatorCredit]:
        raw = await self._redis.hgetall(self._keys.user(sender_id).outbox)
        return [CreatorCredit.from_json(value) for value in raw.values()]

    async def sweep(self, older_than_ms: int) -> int:
        """Apply every outbox entry written before ``older_than_ms``; return how many were credited now."""
        credited = 0
        async for key in self._redis.scan_iter(match=self._keys.outbox_pattern, count=500, _type="HASH"):
            for credit in await self.pending_outbox(self._keys.user_id_of_outbox(key)):
                if credit.ts < older_than_ms and await self.apply(credit):
                    credited += 1
        return credited
