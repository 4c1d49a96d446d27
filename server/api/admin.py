"""Admin HTTP routes: withdrawals to pay or reject, frozen users, catalog edits, the logs.

Every change made here is appended to the admin log (``GET /v1/admin/log``).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from server.api.context import (
    JSON,
    Context,
    caller,
    context,
    now_ms,
    query_int,
    read_json,
)
from server.audit import audit_books
from server.auth import Principal
from server.domain.catalog import Gift
from server.domain.ids import check_id
from server.domain.requests import DecisionRequest, FreezeRequest, GiftChange, NewGift, parse
from server.errors import Conflict, InvalidRequest, NotFound
from server.store.connection import unbudgeted

WITHDRAWAL_STATES = ("requested", "paid", "rejected")


def admin(request: Request) -> tuple[Context, Principal]:
    return context(request), caller(request, "admin")


async def list_withdrawals(request: Request) -> JSON:
    ctx, _ = admin(request)
    state = request.query_params.get("state")
    if state is not None and state not in WITHDRAWAL_STATES:
        raise InvalidRequest(f"state must be one of {', '.join(WITHDRAWAL_STATES)}")
    creator_id = request.query_params.get("creator_id")
    if creator_id is not None:
        check_id(creator_id, "creator_id")
    limit = query_int(request, "limit", 50, 1, 500)
    withdrawals = await ctx.store.withdrawals.list(creator_id, state, limit)
    return JSON({"withdrawals": [w.to_dict() for w in withdrawals]})


async def decide(request: Request, state: str) -> JSON:
    ctx, principal = admin(request)
    withdrawal_id = check_id(request.path_params["withdrawal_id"], "withdrawal_id")
    note = parse(await read_json(request, optional=True), DecisionRequest).note
    withdrawal = await ctx.store.withdrawals.decide(withdrawal_id, state, principal.user_id, note, now_ms())
    await ctx.store.replicated(users=[withdrawal.creator_id])
    await ctx.store.admin_log.record(
        principal.user_id,
        f"withdrawal.{state}",
        withdrawal_id,
        {"creator_id": withdrawal.creator_id, "diamonds": withdrawal.diamonds, "note": note},
        now_ms(),
    )
    return JSON(withdrawal.to_dict())


async def mark_paid(request: Request) -> JSON:
    return await decide(request, "paid")


async def reject(request: Request) -> JSON:
    return await decide(request, "rejected")


async def set_frozen(request: Request) -> JSON:
    ctx, principal = admin(request)
    user_id = check_id(request.path_params["user_id"], "user_id")
    body = parse(await read_json(request), FreezeRequest)
    await ctx.store.wallets.set_frozen(user_id, body.frozen)
    await ctx.store.replicated(users=[user_id])
    action = "user.freeze" if body.frozen else "user.unfreeze"
    await ctx.store.admin_log.record(principal.user_id, action, user_id, {}, now_ms())
    return JSON({"user_id": user_id, "frozen": body.frozen})


async def add_gift(request: Request) -> JSON:
    ctx, principal = admin(request)
    gift = Gift(**msgspec.structs.asdict(parse(await read_json(request), NewGift)))
    if gift.id in ctx.catalog.gifts:
        raise Conflict(f"gift {gift.id!r} exists; change it with PATCH", code="gift_exists")
    await save_gift(ctx, principal, "catalog.add", gift)
    return JSON(gift.to_record(), status_code=201)


async def change_gift(request: Request) -> JSON:
    ctx, principal = admin(request)
    gift_id = check_id(request.path_params["gift_id"], "gift_id")
    current = ctx.catalog.gifts.get(gift_id)  # retired gifts too: they can be changed back
    if current is None:
        raise NotFound(f"unknown gift {gift_id!r}", code="unknown_gift")
    change = parse(await read_json(request), GiftChange)
    fields = msgspec.structs.asdict(change)
    gift = msgspec.structs.replace(
        current, **{name: value for name, value in fields.items() if value is not None}
    )
    await save_gift(ctx, principal, "catalog.change", gift)
    return JSON(gift.to_record())


async def save_gift(ctx: Context, principal: Principal, action: str, gift: Gift) -> None:
    await ctx.store.catalog.save(gift)
    ctx.catalog.apply(gift)
    await ctx.store.admin_log.record(principal.user_id, action, gift.id, gift.to_record(), now_ms())


async def admin_log(request: Request) -> JSON:
    ctx, _ = admin(request)
    limit = query_int(request, "limit", 50, 1, 200)
    entries, cursor = await ctx.store.admin_log.page(request.query_params.get("cursor"), limit)
    return JSON({"entries": entries, "next_cursor": cursor})


async def books_audit(request: Request) -> JSON:
    """Replay every ledger and check the books (``server.audit``); 200 with ``"ok": false``
    and the violations when they do not balance: the audit ran, the books failed it."""
    ctx, _ = admin(request)
    # It reads every ledger: each engine call is bounded, the whole read is not.
    with unbudgeted():
        result = await audit_books(
            ctx.store.redis,
            ctx.store.keys,
            ctx.settings.creator_share,
            clawback_window_ms=ctx.settings.clawback_window_ms,
        )
    return JSON(result.to_dict())


routes = [
    Route("/v1/admin/withdrawals", list_withdrawals),
    Route("/v1/admin/withdrawals/{withdrawal_id}/paid", mark_paid, methods=["POST"]),
    Route("/v1/admin/withdrawals/{withdrawal_id}/reject", reject, methods=["POST"]),
    Route("/v1/admin/users/{user_id}/frozen", set_frozen, methods=["PUT"]),
    Route("/v1/admin/catalog/gifts", add_gift, methods=["POST"]),
    Route("/v1/admin/catalog/gifts/{gift_id}", change_gift, methods=["PATCH"]),
    Route("/v1/admin/log", admin_log),
    Route("/v1/admin/audit", books_audit),
]
