"""HTTP routes of a creator: earnings, the diamond ledger, withdrawals, the overlay token,
and the overlay's own read-only lookup."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, caller, context, now_ms, query_int, read_json
from server.auth import CREATOR_ROLES
from server.domain.ids import new_id
from server.domain.money import diamonds_value_minor, utc_day
from server.domain.requests import WithdrawalRequest, parse
from server.errors import Conflict, NotFound
from server.settings import Settings
from server.store.records import Earnings
from server.store.withdrawals import CURRENCY


async def creator_earnings(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    ctx = context(request)
    earnings = await ctx.store.earnings.get(principal.user_id, now_ms())
    titles = await ctx.store.videos.titles(list(earnings.videos))
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
            "videos": [
                {"video_id": video_id, "title": titles.get(video_id, ""), "diamonds": diamonds}
                for video_id, diamonds in sorted(earnings.videos.items(), key=lambda kv: -kv[1])
            ],
            "terms": money_terms(ctx.settings),
        }
    )


def money_terms(settings: Settings) -> dict[str, Any]:
    """The terms a creator earns and withdraws under, as the settings make them."""
    hold_s = settings.diamond_hold_s
    return {
        "share_percent": float(settings.creator_share * 100),
        "diamond_value_millicents": settings.diamond_value_millicents,
        "currency": CURRENCY,
        "min_withdrawal_diamonds": settings.min_withdrawal_diamonds,
        "min_withdrawal_minor": diamonds_value_minor(
            settings.min_withdrawal_diamonds, settings.diamond_value_millicents
        ),
        "hold_s": int(hold_s) if hold_s == int(hold_s) else hold_s,
        "daily_payout_cap_minor": settings.daily_payout_cap_minor,
    }


async def creator_earnings_ledger(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    limit = query_int(request, "limit", 50, 1, 200)
    ctx = context(request)
    entries, cursor = await ctx.store.earnings.ledger(
        principal.user_id, request.query_params.get("cursor"), limit
    )
    titles = await ctx.store.videos.titles(sorted({e["video_id"] for e in entries if "video_id" in e}))
    for entry in entries:
        if "video_id" in entry:
            entry["video_title"] = titles.get(entry["video_id"])
        if entry["kind"] == "gift":
            # Credits made before these were recorded have none: null, rather than a guess.
            for name in ("gift_id", "count", "sender_name"):
                entry.setdefault(name, None)
            entry["sender_name"] = entry["sender_name"] or None
            gift = ctx.catalog.gifts.get(entry["gift_id"] or "")
            entry["gift_name"] = gift.name if gift is not None else None
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
    await ctx.store.replicated(users=[principal.user_id])
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSON(withdrawal.to_dict(), status_code=200 if replayed else 201, headers=headers)


async def list_withdrawals(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    limit = query_int(request, "limit", 50, 1, 200)
    withdrawals = await context(request).store.withdrawals.list(principal.user_id, None, limit)
    return JSON({"withdrawals": [w.to_dict() for w in withdrawals]})


async def overlay(request: Request) -> JSON:
    principal = caller(request, "creator")
    token = await context(request).store.overlays.current(principal.user_id)
    return JSON({"token": token, "url": f"/overlay/{token}"})


async def regenerate_overlay(request: Request) -> JSON:
    principal = caller(request, "creator")
    store = context(request).store
    live = await store.rooms.live_room_of(principal.user_id)
    token = await store.overlays.regenerate(principal.user_id, live.room_id if live is not None else None)
    return JSON({"token": token, "url": f"/overlay/{token}"})


async def test_alert(request: Request) -> JSON:
    """A fake alert on the creator's overlays (never on viewers' screens), to set up OBS."""
    principal = caller(request, "creator")
    ctx = context(request)
    room = await ctx.store.rooms.live_room_of(principal.user_id)
    if room is None:
        raise Conflict("go live first: the test alert goes to the live room's overlays", code="not_live")
    await ctx.store.rooms.publish_test_alert(room.room_id, now_ms())
    return JSON({"sent": True, "room_id": room.room_id}, status_code=202)


async def overlay_info(request: Request) -> JSON:
    """What an overlay page needs to know about its token: whose it is, and the live room."""
    ctx = context(request)
    token = request.path_params["token"]
    creator_id = await ctx.store.overlays.creator_of(token)
    if creator_id is None:
        raise NotFound("unknown overlay token: it may have been regenerated", code="overlay_not_found")
    name = await ctx.gifts.name_of(creator_id)
    room = await ctx.store.rooms.live_room_of(creator_id)
    return JSON({"creator": {"id": creator_id, "name": name}, "room_id": room.room_id if room else None})


routes = [
    Route("/v1/creator/overlay", overlay),
    Route("/v1/creator/overlay/regenerate", regenerate_overlay, methods=["POST"]),
    Route("/v1/creator/test-alert", test_alert, methods=["POST"]),
    Route("/v1/overlay/{token}", overlay_info),
    Route("/v1/creator/earnings", creator_earnings),
    Route("/v1/creator/earnings/ledger", creator_earnings_ledger),
    Route("/v1/creator/withdrawals", request_withdrawal, methods=["POST"]),
    Route("/v1/creator/withdrawals", list_withdrawals, methods=["GET"]),
]
