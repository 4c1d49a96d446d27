"""Withdrawals: a creator reserves available diamonds for a payout; an admin pays or rejects."""

from __future__ import annotations

from redis.asyncio import Redis

from server.errors import Conflict, Forbidden, InvalidRequest, NotFound
from server.keys import KeySchema
from server.store.records import Withdrawal
from server.store.scripts import Scripts

WITHDRAWAL_KEY_TTL_S = 30 * 86_400
CURRENCY = "USD"


class Withdrawals:
    def __init__(self, redis: Redis, keys: KeySchema, scripts: Scripts) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts

    async def request(
        self,
        creator_id: str,
        withdrawal_id: str,
        *,
        diamonds: int,
        amount_minor: int,
        minimum: int,
        daily_cap_minor: int,
        day: int,
        idempotency_key: str,
        now_ms: int,
    ) -> tuple[Withdrawal, bool]:
        """Reserve ``diamonds`` for a payout; returns the withdrawal and whether it is a replay."""
        creator = self._keys.user(creator_id)
        # The pointer and the listing entry come first, so that a withdrawal the script creates
        # is always reachable by an admin; they are removed again if the script refuses.
        owner = self._keys.withdrawal_owner(withdrawal_id)
        listed = f"{creator_id}:{withdrawal_id}"
        await self._redis.set(owner, creator_id)
        await self._redis.zadd(self._keys.withdrawals, {listed: now_ms})
        reply = await self._scripts.withdraw(
            keys=[
                creator.earnings,
                creator.earnings_ledger,
                creator.withdrawal(withdrawal_id),
                creator.withdrawal_key(idempotency_key),
                creator.wallet,
            ],
            args=[
                withdrawal_id,
                diamonds,
                amount_minor,
                CURRENCY,
                minimum,
                daily_cap_minor,
                day,
                now_ms,
                WITHDRAWAL_KEY_TTL_S,
            ],
        )
        status = reply[0]
        if status != "ok":
            await self._redis.delete(owner)
            await self._redis.zrem(self._keys.withdrawals, listed)
        if status in ("ok", "replay"):
            return await self.get(creator_id, reply[1]), status == "replay"
        if status == "mismatch":
            raise Conflict(
                f"idempotency key {idempotency_key!r} was already used for another amount",
                code="idempotency_mismatch",
            )
        if status == "frozen":
            raise Forbidden("this account is frozen: it cannot withdraw", code="account_frozen")
        if status == "below_min":
            raise InvalidRequest(
                f"the minimum withdrawal is {reply[1]} diamonds", code="below_minimum_withdrawal"
            )
        if status == "insufficient":
            raise Conflict(
                f"{diamonds} diamonds requested; {reply[1]} are available", code="insufficient_diamonds"
            )
        if status == "cap":
            raise Conflict(
                f"this payout of {amount_minor} {CURRENCY} minor units would pass the daily cap of "
                f"{reply[2]}; {reply[1]} are already requested today",
                code="daily_payout_cap",
            )
        raise RuntimeError(f"withdraw returned {reply!r}")

    async def get(self, creator_id: str, withdrawal_id: str) -> Withdrawal:
        raw = await self._redis.hgetall(self._keys.user(creator_id).withdrawal(withdrawal_id))
        if not raw:
            raise NotFound(f"no withdrawal {withdrawal_id!r}", code="withdrawal_not_found")
        return Withdrawal.from_hash(creator_id, raw)

    async def owner(self, withdrawal_id: str) -> str:
        creator: str | None = await self._redis.get(self._keys.withdrawal_owner(withdrawal_id))
        if creator is None:
            raise NotFound(f"no withdrawal {withdrawal_id!r}", code="withdrawal_not_found")
        return creator

    async def decide(
        self, withdrawal_id: str, state: str, admin_id: str, note: str, now_ms: int
    ) -> Withdrawal:
        """Mark a requested withdrawal ``paid`` or ``rejected``; a second decision is refused."""
        creator_id = await self.owner(withdrawal_id)
        creator = self._keys.user(creator_id)
        reply = await self._scripts.withdrawal_decide(
            keys=[creator.withdrawal(withdrawal_id), creator.earnings, creator.earnings_ledger],
            args=[state, admin_id, now_ms, note],
        )
        if reply[0] == "missing":
            raise NotFound(f"no withdrawal {withdrawal_id!r}", code="withdrawal_not_found")
        if reply[0] == "already":
            raise Conflict(f"withdrawal {withdrawal_id!r} is already {reply[1]}", code="withdrawal_decided")
        return await self.get(creator_id, withdrawal_id)

    async def list(self, creator_id: str | None, state: str | None, limit: int) -> list[Withdrawal]:
        """Newest first, optionally one creator's or in one state (scans the listing index)."""
        members = await self._redis.zrevrange(self._keys.withdrawals, 0, -1)
        out: list[Withdrawal] = []
        for start in range(0, len(members), 500):
            chunk = [m.split(":", 1) for m in members[start : start + 500]]
            chunk = [(c, w) for c, w in chunk if creator_id is None or c == creator_id]
            async with self._redis.pipeline(transaction=False) as pipe:
                for c, w in chunk:
                    pipe.hgetall(self._keys.user(c).withdrawal(w))
                replies = await pipe.execute()
            for (c, _), raw in zip(chunk, replies, strict=True):
                if raw and (state is None or raw["state"] == state):
                    out.append(Withdrawal.from_hash(c, raw))
                    if len(out) == limit:
                        return out
        return out
