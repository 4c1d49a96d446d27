"""Coin wallets: balances, budgets, the ledger, and the atomic gift debit."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from server.errors import Conflict, DailyLimitExceeded, Forbidden, InsufficientCoins, RateLimited
from server.keys import KeySchema, UserKeys
from server.store.batch import ScriptBatch
from server.store.moderation import banned_error
from server.store.records import CreatorCredit, Debit, Wallet
from server.store.scripts import GIFT_DEBIT, Arg, Arguments, Refusals, outcome
from server.store.streams import read_stream_page

# How long past the clawback window a buyer's gifts stay on the list claw_back.lua reads.
CLAWABLE_SLACK_MS = 3_600_000


class Wallets:
    def __init__(self, redis: Redis, keys: KeySchema, batch: ScriptBatch) -> None:
        self._redis = redis
        self._keys = keys
        self._batch = batch

    async def get(self, user_id: str, today: int) -> Wallet:
        coins, limit, day, spent = await self._redis.hmget(
            self._keys.user(user_id).wallet, ["coins", "daily_limit", "spent_day", "spent"]
        )
        return Wallet(
            coins=int(coins or 0),
            daily_limit=None if limit is None else int(limit),
            spent_today=int(spent or 0) if day == str(today) else 0,
        )

    async def set_frozen(self, user_id: str, frozen: bool) -> None:
        key = self._keys.user(user_id).wallet
        if frozen:
            await self._redis.hset(key, "frozen", 1)
        else:
            await self._redis.hdel(key, "frozen")

    async def frozen(self, user_id: str) -> bool:
        return bool(await self._redis.hget(self._keys.user(user_id).wallet, "frozen") == "1")

    async def set_daily_limit(self, user_id: str, daily_limit: int | None) -> None:
        key = self._keys.user(user_id).wallet
        if daily_limit is None:
            await self._redis.hdel(key, "daily_limit")
        else:
            await self._redis.hset(key, "daily_limit", daily_limit)

    async def ledger(
        self, user_id: str, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the user's ledger, newest first, and the cursor of the next page."""
        return await read_stream_page(self._redis, self._keys.user(user_id).ledger, cursor, limit)

    async def replay(self, user_id: str, idempotency_key: str, fingerprint: str) -> Debit | None:
        """The first answer to an idempotency key if it was used for this same gift, else None."""
        fp, event_id, coins, cost = await self._redis.hmget(
            self._keys.user(user_id).idempotency(idempotency_key), ["fp", "event_id", "coins", "cost"]
        )
        if fp is None or fp != fingerprint:
            return None
        return Debit(event_id=event_id, coins=int(coins), cost=int(cost), replayed=True)

    async def debit_gift(
        self,
        *,
        credit: CreatorCredit,
        idempotency_key: str,
        fingerprint: str,
        day: int,
        idempotency_ttl_s: int,
        rate_per_s: int,
        burst: int,
        clawback_window_ms: int,
    ) -> Debit:
        """Debit ``credit.coins`` from the sender and queue the creator credit, atomically."""
        keys, args = gift_debit_arguments(
            self._keys.user(credit.sender_id),
            credit,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            day=day,
            idempotency_ttl_s=idempotency_ttl_s,
            rate_per_s=rate_per_s,
            burst=burst,
            clawback_window_ms=clawback_window_ms,
        )
        reply: list[Any] = await self._batch.call(GIFT_DEBIT, keys, args)
        status = outcome(
            GIFT_DEBIT,
            reply,
            ("ok", "replay"),
            _debit_refusals(credit.coins, idempotency_key, rate_per_s, burst),
        )[0]
        if status == "ok":
            return Debit(reply[1], int(reply[2]), credit.coins, replayed=False, debit_ms=int(reply[4]))
        if reply[1] == credit.event_id:
            # The event id is new: this very call, sent again by the engine client after its
            # first reply was lost, debited the gift, which is still to be delivered.
            return Debit(reply[1], int(reply[2]), int(reply[3]), replayed=False, debit_ms=int(reply[4]))
        return Debit(event_id=reply[1], coins=int(reply[2]), cost=int(reply[3]), replayed=True)


def _debit_refusals(cost: int, idempotency_key: str, rate_per_s: int, burst: int) -> Refusals:
    """The errors of ``gift_debit.lua``'s refusals, for a gift of ``cost`` coins."""
    return {
        "mismatch": lambda _: Conflict(
            f"idempotency key {idempotency_key!r} was already used for a different gift",
            code="idempotency_mismatch",
        ),
        "insufficient": lambda reply: InsufficientCoins(
            f"this gift costs {cost} coins; the balance is {reply[1]}",
            details={"cost": cost, "balance": int(reply[1])},
        ),
        "limit": lambda reply: _over_daily_limit(cost, spent_today=int(reply[1]), daily_limit=int(reply[2])),
        "frozen": lambda _: Forbidden("this account is frozen: it cannot send gifts", code="account_frozen"),
        "banned": lambda _: banned_error(),
        "negative": lambda reply: InsufficientCoins(
            f"the balance is {reply[1]} coins after a refund or chargeback; "
            "buy coins to bring it back to zero before gifting",
            code="negative_balance",
            details={"cost": cost, "balance": int(reply[1])},
        ),
        "rate": lambda reply: RateLimited(
            f"too many gifts: at most {rate_per_s} a second (bursts of {burst}); retry in {reply[1]} ms",
            retry_after_ms=int(reply[1]),
        ),
    }


def _over_daily_limit(cost: int, *, spent_today: int, daily_limit: int) -> DailyLimitExceeded:
    budget_left = max(daily_limit - spent_today, 0)
    return DailyLimitExceeded(
        f"this gift costs {cost} coins; {spent_today} of the daily limit of {daily_limit} are "
        f"already spent today, {budget_left} left",
        details={
            "cost": cost,
            "daily_limit": daily_limit,
            "spent_today": spent_today,
            "budget_left": budget_left,
        },
    )


def gift_debit_arguments(
    user: UserKeys,
    credit: CreatorCredit,
    *,
    idempotency_key: str,
    fingerprint: str,
    day: int,
    idempotency_ttl_s: int,
    rate_per_s: int,
    burst: int,
    clawback_window_ms: int,
) -> Arguments:
    """KEYS and ARGV of ``gift_debit.lua`` (see its header), in one place for every caller."""
    keys = [
        user.wallet,
        user.ledger,
        user.idempotency(idempotency_key),
        user.outbox,
        user.gift_rate,
        user.clawable,
        user.banned_by,
    ]
    args: list[Arg] = [
        credit.coins,
        fingerprint,
        credit.event_id,
        credit.ts,
        day,
        idempotency_ttl_s,
        credit.room_id,
        credit.gift_id,
        credit.count,
        credit.to_json(),
        rate_per_s,
        burst,
        credit.creator_id,
        # Kept a while past the window, so that a clawback on a process whose clock is behind
        # never misses a gift another process already dropped.
        clawback_window_ms + CLAWABLE_SLACK_MS,
        credit.video_id,
    ]
    return keys, args
