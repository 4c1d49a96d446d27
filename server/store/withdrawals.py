"""Withdrawals: a creator reserves available diamonds for a payout; an admin pays or rejects."""

from __future__ import annotations

from redis.asyncio import Redis

from server.domain.ids import new_id
from server.errors import Conflict, Forbidden, InvalidRequest, NotFound
from server.keys import KeySchema, UserKeys
from server.store.records import Withdrawal
from server.store.scripts import WITHDRAW, WITHDRAWAL_DECIDE, Arguments, Refusals, ScriptRunner, outcome

WITHDRAWAL_KEY_TTL_S = 30 * 86_400
CURRENCY = "USD"


class Withdrawals:
    def __init__(self, redis: Redis, keys: KeySchema, runner: ScriptRunner) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner

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
        reply = await self._runner.call(
            WITHDRAW,
            *withdraw_arguments(
                creator,
                withdrawal_id,
                idempotency_key,
                diamonds,
                amount_minor,
                minimum,
                daily_cap_minor,
                day,
                now_ms,
            ),
        )
        # ``withdrawal_id`` is new: a replay naming it is this very call, sent again by the
        # engine client after its first reply was lost, and reserved these diamonds.
        own = reply[0] == "replay" and reply[1] == withdrawal_id
        if reply[0] != "ok" and not own:
            await self._redis.delete(owner)
            await self._redis.zrem(self._keys.withdrawals, listed)
        refusals: Refusals = {
            "mismatch": lambda _: Conflict(
                f"idempotency key {idempotency_key!r} was already used for another amount",
                code="idempotency_mismatch",
            ),
            "frozen": lambda _: Forbidden(
                "this account is frozen: it cannot withdraw", code="account_frozen"
            ),
            "below_min": lambda reply: InvalidRequest(
                f"{diamonds} diamonds requested; a withdrawal is at least {reply[1]} diamonds",
                code="below_minimum_withdrawal",
                details={"minimum_diamonds": int(reply[1])},
            ),
            "insufficient": lambda reply: Conflict(
                f"{diamonds} diamonds requested; {reply[1]} are available", code="insufficient_diamonds"
            ),
            "cap": lambda reply: Conflict(
                f"this payout of {amount_minor} {CURRENCY} minor units would pass the daily cap of "
                f"{reply[2]}; {reply[1]} are already requested today",
                code="daily_payout_cap",
            ),
        }
        status = outcome(WITHDRAW, reply, ("ok", "replay"), refusals)[0]
        return await self.get(creator_id, reply[1]), status == "replay" and not own

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
        reply = await self._runner.call(
            WITHDRAWAL_DECIDE,
            *withdrawal_decide_arguments(
                self._keys.user(creator_id), withdrawal_id, state, admin_id, note, now_ms
            ),
        )
        refusals: Refusals = {
            "missing": lambda _: NotFound(f"no withdrawal {withdrawal_id!r}", code="withdrawal_not_found"),
            "already": lambda reply: Conflict(
                f"withdrawal {withdrawal_id!r} is already {reply[1]}", code="withdrawal_decided"
            ),
        }
        outcome(WITHDRAWAL_DECIDE, reply, ("ok",), refusals)
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


def withdraw_arguments(
    creator: UserKeys,
    withdrawal_id: str,
    idempotency_key: str,
    diamonds: int,
    amount_minor: int,
    minimum: int,
    daily_cap_minor: int,
    day: int,
    now_ms: int,
) -> Arguments:
    """KEYS and ARGV of ``withdraw.lua``."""
    return (
        [
            creator.earnings,
            creator.earnings_ledger,
            creator.withdrawal(withdrawal_id),
            creator.withdrawal_key(idempotency_key),
            creator.wallet,
        ],
        [
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


def withdrawal_decide_arguments(
    creator: UserKeys, withdrawal_id: str, state: str, admin_id: str, note: str, now_ms: int
) -> Arguments:
    """KEYS and ARGV of ``withdrawal_decide.lua``, with a new id for this call."""
    return (
        [creator.withdrawal(withdrawal_id), creator.earnings, creator.earnings_ledger],
        [state, admin_id, now_ms, note, new_id("decide")],
    )
