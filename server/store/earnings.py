"""Creator earnings: diamonds credited per gift, held, released, reversed after a clawback.

The credit arrives through the sender's outbox (see ``store.outbox``); the creator script's
per-event guard makes a second delivery of the same gift a no-op. Credited diamonds are
*pending* until their hold ends; ``release`` moves those due to *available*, and runs before
every read and every withdrawal, so no timer is needed.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

from redis.asyncio import Redis

from server.keys import KeySchema, UserKeys
from server.store.batch import ScriptBatch
from server.store.records import CreatorCredit, Earnings
from server.store.scripts import CREDIT_CREATOR, RELEASE_DIAMONDS, REVERSE_CREDIT, Arguments, ScriptRunner
from server.store.streams import read_stream_page

# Holds released per script call; a creator with more due holds is released in several calls.
RELEASE_BATCH = 1_000


class CreatorEarnings:
    def __init__(self, redis: Redis, keys: KeySchema, runner: ScriptRunner, batch: ScriptBatch) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner
        self._batch = batch

    async def get(self, creator_id: str, now_ms: int) -> Earnings:
        """The creator's diamonds after releasing every hold that has ended by ``now_ms``."""
        await self.release(creator_id, now_ms)
        creator = self._keys.user(creator_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(creator.earnings, Earnings.FIELDS)
            pipe.hgetall(creator.lives)
            pipe.hgetall(creator.video_earnings)
            raw, lives, videos = await pipe.execute()
        values = {name: int(value or 0) for name, value in zip(Earnings.FIELDS, raw, strict=True)}
        return Earnings(
            **values,
            lives={room: int(n) for room, n in lives.items()},
            videos={video: int(n) for video, n in videos.items()},
        )

    async def release(self, creator_id: str, now_ms: int) -> int:
        """Move every diamond whose hold ended by ``now_ms`` to available; how many moved."""
        creator = self._keys.user(creator_id)
        total = 0
        while True:
            released: int = await self._runner.call(
                RELEASE_DIAMONDS, *release_diamonds_arguments(creator, now_ms)
            )
            total += released
            if not released or not await self._redis.zcount(creator.holds, "-inf", now_ms):
                return total

    async def ledger(
        self, creator_id: str, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the creator's diamond ledger, newest first, and the next page's cursor.

        Each ``gift`` entry also says what became of its diamonds now, its ``state``: ``pending``
        (still held), ``clawed_back`` (the coins that paid for it were refunded or charged
        back), else ``available`` (released by its hold's end)."""
        creator = self._keys.user(creator_id)
        entries, next_cursor = await read_stream_page(self._redis, creator.earnings_ledger, cursor, limit)
        gifts = [entry for entry in entries if entry.get("kind") == "gift"]
        if gifts:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in gifts:
                    pipe.hexists(creator.held, entry["ref"])
                    pipe.sismember(creator.reversed, entry["ref"])
                replies = await pipe.execute()
            for i, entry in enumerate(gifts):
                held, reversed_ = replies[2 * i], replies[2 * i + 1]
                entry["diamonds"] = entry["pending"]
                entry["state"] = "pending" if held else "clawed_back" if reversed_ else "available"
        return entries, next_cursor

    def credit(self, credit: CreatorCredit, hold_until_ms: int, share: Fraction) -> asyncio.Future[bool]:
        """Credit the creator's diamonds for one gift, pending until ``hold_until_ms``; True if
        credited now, False if credited (or reversed) before. ``share`` is recorded with it, so
        the audit can check each credit against the share in force when it was made.

        Queued at once and sent with the gift path's other scripts of this event-loop turn
        (see ``store.batch``); await the future for the outcome."""
        return self._batch.call(
            CREDIT_CREATOR,
            *credit_creator_arguments(self._keys.user(credit.creator_id), credit, hold_until_ms, share),
            bool,
        )

    async def reverse(self, creator_id: str, event_id: str, order_id: str, now_ms: int) -> tuple[str, int]:
        """Take back a gift's pending diamonds after a clawback: ("reversed", n), ("blocked", 0)
        if its credit had not arrived, ("settled", 0) if already released, ("already", 0)."""
        # Through the batch: the reversals of one clawback, awaited together, share round trips.
        reply: list[Any] = await self._batch.call(
            REVERSE_CREDIT, *reverse_credit_arguments(self._keys.user(creator_id), event_id, order_id, now_ms)
        )
        return reply[0], int(reply[1]) if len(reply) > 1 else 0


def release_diamonds_arguments(creator: UserKeys, now_ms: int) -> Arguments:
    """KEYS and ARGV of ``release_diamonds.lua``."""
    return [creator.earnings, creator.earnings_ledger, creator.holds, creator.held], [now_ms, RELEASE_BATCH]


def credit_creator_arguments(
    creator: UserKeys, credit: CreatorCredit, hold_until_ms: int, share: Fraction
) -> Arguments:
    """KEYS and ARGV of ``credit_creator.lua``."""
    return (
        [
            creator.credited,
            creator.earnings,
            creator.earnings_ledger,
            creator.holds,
            creator.held,
            creator.lives,
            creator.reversed,
            creator.video_earnings,
        ],
        [
            credit.event_id,
            credit.diamonds,
            credit.coins,
            credit.sender_id,
            credit.room_id,
            credit.ts,
            hold_until_ms,
            f"{share.numerator}/{share.denominator}",
            credit.gift_id,
            credit.count,
            credit.sender_name,
            credit.video_id,
        ],
    )


def reverse_credit_arguments(creator: UserKeys, event_id: str, order_id: str, now_ms: int) -> Arguments:
    """KEYS and ARGV of ``reverse_credit.lua``."""
    return (
        [
            creator.reversed,
            creator.earnings,
            creator.earnings_ledger,
            creator.holds,
            creator.held,
            creator.credited,
        ],
        [event_id, order_id, now_ms],
    )
