"""The queue of creator-credit reversals a clawback leaves in the buyer's slot.

``claw_back.lua`` picks the gifts whose diamonds should be taken back and queues them here in
the same atomic step as the clawback; each is then applied in its creator's slot
(``reverse_credit.lua``, once per gift event) and cleared. An entry left by a crash is found
by ``buyers`` and applied again, which the per-event guard makes harmless.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from redis.asyncio import Redis

from server.keys import KeySchema


class Reversals:
    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        self._redis = redis
        self._keys = keys

    async def pending(self, buyer_id: str) -> list[tuple[str, str, str]]:
        """(gift event id, creator id, order id) of each queued reversal."""
        raw = await self._redis.hgetall(self._keys.user(buyer_id).reversals)
        out = []
        for event_id, value in raw.items():
            creator_id, _, order_id = value.partition("|")
            out.append((event_id, creator_id, order_id))
        return out

    async def clear(self, buyer_id: str, event_ids: Sequence[str]) -> None:
        if event_ids:
            await self._redis.hdel(self._keys.user(buyer_id).reversals, *event_ids)

    async def buyers(self) -> AsyncIterator[str]:
        async for key in self._redis.scan_iter(match=self._keys.reversals_pattern, count=500, _type="HASH"):
            yield self._keys.user_id_of(key)
