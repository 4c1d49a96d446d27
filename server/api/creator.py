"""HTTP routes of a creator's money: earnings, the diamond ledger and withdrawals."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, caller, context, now_ms, query_int, read_json
from server.domain.ids import new_id
from server.domain.money import diamonds_value_minor, utc_day
from server.domain.requests import WithdrawalRequest, parse
from server.store.records import Earnings
from server.store.withdrawals import CURRENCY

CREATOR_ROLES = ("creator", "admin")


async def creator_earnings(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    ctx = context(request)
    earnings = await ctx.store.earnings.get(principal.user_id, now_ms())
    rate = ctx.settings.diamond_value_millicents
    return JSON(
        {
            **{name: getattr(earnings, name) for name in Earnings.FIELDS},
            "diamond_value_minor": diamonds_value_minor(earnings.available, rate),
            "pending_value_minor": diamonds_value_minor(earnings.pending, rate),
            "diamond_value_millicents": rate,
            "currency": CURRENCY,
            "lives": [
                {"room_id": room_id, "diamonds": diamonds}
                for room_id, diamonds in sorted(earnings.lives.items(), key=lambda kv: -kv[1])
            ],
        }
    )


async def creator_earnings_ledger(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    limit = query_int(request, "limit", 50, 1, 200)
    entries, cursor = await context(request).store.earnings.ledger(
        principal.user_id, request.query_params.get("cursor"), limit
    )
    return JSON({"entries": entries, "next_cursor": cursor})


async def request_withdrawal(request: Request) -> JSON:
    principal = caller(request, "creator")
    body = parse(await read_json(request), WithdrawalRequest)
    ctx = context(request)
    now = now_ms()
    await ctx.store.earnings.release(principal.user_id, now)
    withdrawal, replayed = await ctx.store.withdrawals.request(
        principal.user_id,
        new_id("wd"),
        diamonds=body.diamonds,
        amount_minor=diamonds_value_minor(body.diamonds, ctx.settings.diamond_value_millicents),
        minimum=ctx.settings.min_withdrawal_diamonds,
        daily_cap_minor=ctx.settings.daily_payout_cap_minor,
        day=utc_day(now),
        idempotency_key=body.idempotency_key,
        now_ms=now,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSON(withdrawal.to_dict(), status_code=200 if replayed else 201, headers=headers)


async def list_withdrawals(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    limit = query_int(request, "limit", 50, 1, 200)
    withdrawals = await context(request).store.withdrawals.list(principal.user_id, None, limit)
    return JSON({"withdrawals": [w.to_dict() for w in withdrawals]})


routes = [
    Route("/v1/creator/earnings", creator_earnings),
    Route("/v1/creator/earnings/ledger", creator_earnings_ledger),
    Route("/v1/creator/withdrawals", request_withdrawal, methods=["POST"]),
    Route("/v1/creator/withdrawals", list_withdrawals, methods=["GET"]),
]
