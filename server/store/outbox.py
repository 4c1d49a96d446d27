"""The outbox: creator credits the debit script queued in the sender's slot, not yet delivered.

The debit script writes a ``CreatorCredit`` here in the same atomic step as the debit, with
the diamonds and the creator share the gift was priced with, which its delivery credits.
Delivering it (publishing the gift into its room and crediting the creator, both guarded
per gift event) and then clearing it is the gift service's job; an entry left behind by a
crash is found by ``senders`` and delivered again, which the guards make harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from server.keys import KeySchema
from server.store.batch import ScriptBatch
from server.store.connection import unbudgeted
from server.store.records import CreatorCredit


class Outbox:
    def __init__(self, redis: Redis, keys: KeySchema, batch: ScriptBatch) -> None:
        self._redis = redis
        self._keys = keys
        self._batch = batch

    async def pending(self, sender_id: str) -> list[CreatorCredit]:
        raw = await self._redis.hgetall(self._keys.user(sender_id).outbox)
        return [CreatorCredit.from_json(value) for value in raw.values()]

    async def clear_many(self, delivered: list[tuple[str, str]]) -> None:
        """Clear many delivered entries, (sender id, gift event id) each: one ``HDEL`` per
        sender, queued on the group commit (``store.batch``), so that they share the round
        trip of whatever else this turn sends; the first error is raised once all are done."""
        by_sender: dict[str, list[str]] = {}
        for sender_id, event_id in delivered:
            by_sender.setdefault(sender_id, []).append(event_id)
        # Charged to no request's budget (their gifts were answered already), so that a batch
        # they share is bounded by its other calls' budgets and its own deadline alone.
        with unbudgeted():
            clears = [
                self._batch.write(("HDEL", self._keys.user(sender).outbox, *ids))
                for sender, ids in by_sender.items()
            ]
        replies = await asyncio.gather(*clears, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply

    async def senders(self) -> AsyncIterator[str]:
        """Every user with a non-empty outbox (empty hashes do not exist, so SCAN finds only these)."""
        async for key in self._redis.scan_iter(match=self._keys.outbox_pattern, count=500, _type="HASH"):
            yield self._keys.user_id_of(key)
