"""HTTP routes for the probes and metrics, the catalog, wallets, purchases, rooms and gifts."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Sequence
from ipaddress import IPv4Network, IPv6Network

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import metrics
from server.api.answers import answer
from server.api.context import JSON, caller, context, now_ms, query_int, read_json
from server.auth import CREATOR_ROLES, GIFTING_ROLES
from server.domain.catalog import tier
from server.domain.ids import check_id, new_id
from server.domain.limits import address_in
from server.domain.money import utc_day
from server.domain.requests import (
    CreateRoomRequest,
    GiftRequest,
    GoalRequest,
    LimitsRequest,
    PurchaseRequest,
    RegionRequest,
    parse,
)
from server.errors import NotFound
from server.gifting import GiftOutcome


async def healthz(request: Request) -> JSON:
    # The pid tells which process answered when several share the port (``--workers``).
    engine = context(request).engine
    if engine is not None and not engine.healthy:
        # The embedded engine died and could not be started again: the server may not recover
        # by itself, and exits once its supervisor gives up.
        return JSON({"status": "failing", "engine": "not_restarting", "pid": os.getpid()}, status_code=503)
    return JSON({"status": "ok", "pid": os.getpid()})


def metrics_route(allowed: Sequence[IPv4Network | IPv6Network]) -> Route:
    """``GET /metrics``, to the clients in ``allowed`` only (any if it is empty)."""

    async def prometheus_metrics(request: Request) -> Response:
        if allowed and not address_in(request.client.host if request.client else None, allowed):
            raise NotFound(f"no route {request.url.path}")  # as if metrics were off
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return Route("/metrics", prometheus_metrics)


async def readyz(request: Request) -> JSON:
    if not await context(request).store.ping():
        return JSON({"status": "unavailable", "engine": "unreachable"}, status_code=503)
    return JSON({"status": "ready"})


async def me(request: Request) -> JSON:
    principal = caller(request)
    name, region = await context(request).store.profile_name_and_region(principal.user_id)
    return JSON(
        {
            "user_id": principal.user_id,
            "role": principal.role,
            "name": name or principal.user_id,
            "region": region,
        }
    )


async def put_region(request: Request) -> JSON:
    """Save the caller's region (the coin packages they see), and answer ``GET /v1/me``."""
    principal = caller(request)
    body = parse(await read_json(request), RegionRequest)
    ctx = context(request)
    if body.region is not None:
        ctx.catalog.check_region(body.region)
    await ctx.store.set_region(principal.user_id, body.region)
    return await me(request)


async def catalog_gifts(request: Request) -> JSON:
    ctx = context(request)
    moment, grand = ctx.settings.moment_coins, ctx.settings.grand_moment_coins
    return JSON(
        {
            "gifts": [
                {**gift.to_dict(), "tier": tier(gift.coins, moment, grand)} for gift in ctx.catalog.on_sale()
            ],
            "tiers": {"moment_coins": moment, "grand_coins": grand},
            "confirm_coins": ctx.settings.confirm_coins,
        }
    )


async def catalog_packages(request: Request) -> JSON:
    region = request.query_params.get("region", "US")
    packages = context(request).catalog.packages(region)
    return JSON({"region": region, "packages": [package.to_dict() for package in packages]})


async def get_wallet(request: Request) -> JSON:
    principal = caller(request)
    wallet = await context(request).store.wallets.get(principal.user_id, utc_day(now_ms()))
    return JSON(wallet.to_dict())


async def put_limits(request: Request) -> JSON:
    principal = caller(request)
    body = parse(await read_json(request), LimitsRequest)
    ctx = context(request)
    await ctx.store.wallets.set_daily_limit(principal.user_id, body.daily_limit)
    wallet = await ctx.store.wallets.get(principal.user_id, utc_day(now_ms()))
    return JSON(wallet.to_dict())


async def wallet_ledger(request: Request) -> JSON:
    principal = caller(request)
    limit = query_int(request, "limit", 50, 1, 200)
    entries, cursor = await context(request).store.wallets.ledger(
        principal.user_id, request.query_params.get("cursor"), limit
    )
    return JSON({"entries": entries, "next_cursor": cursor})


async def create_purchase(request: Request) -> JSON:
    principal = caller(request)
    body = parse(await read_json(request), PurchaseRequest)
    ctx = context(request)
    package = ctx.catalog.package(body.region, body.package_id)
    order = await ctx.purchases.open(principal.user_id, package, body.provider, now_ms())
    return JSON(order, status_code=201)


async def get_purchase(request: Request) -> JSON:
    principal = caller(request)
    order_id = check_id(request.path_params["order_id"], "order_id")
    return JSON(await context(request).store.payments.get_order(principal.user_id, order_id))


async def list_rooms(request: Request) -> JSON:
    limit = query_int(request, "limit", 50, 1, 200)
    rooms = await context(request).store.rooms.live(limit)
    return JSON({"rooms": [{**room.to_dict(), "viewers": state.viewers} for room, state in rooms]})


async def create_room(request: Request) -> JSON:
    principal = caller(request, "creator")
    body = parse(await read_json(request, optional=True), CreateRoomRequest)
    title = body.title or f"{principal.user_id}'s live"
    room = await context(request).store.rooms.create(principal.user_id, new_id("r"), title, now_ms())
    return JSON(room.to_dict(), status_code=201)


async def get_room(request: Request) -> JSON:
    room_id = check_id(request.path_params["room_id"], "room_id")
    return JSON(await context(request).hub.snapshot(room_id))


async def end_room(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    ctx = context(request)
    rooms = ctx.store.rooms
    room = await rooms.owned(room_id, principal.user_id, principal.role == "admin", "end it")
    # Ending the live forfeits the creator's battle (or withdraws their invitation) first, so
    # that the room's viewers see its end before the live's.
    if room.live:
        await ctx.battles.forfeit(room.creator_id)
    room = await rooms.end(room)
    return JSON({**room.to_dict(), "summary": await rooms.summary_of(room, now_ms())})


async def room_summary(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    rooms = context(request).store.rooms
    return JSON(await rooms.summary(room_id, principal.user_id, principal.role == "admin", now_ms()))


async def set_goal(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    body = parse(await read_json(request), GoalRequest)
    state = await context(request).store.rooms.set_goal(
        room_id, principal.user_id, principal.role == "admin", body.coins
    )
    return JSON({"room_id": room_id, "goal": state.goal_dict()})


async def send_gift(request: Request) -> JSON:
    return await gift_answer(request, gift_from(request))


async def gift_answer(request: Request, attempt: Awaitable[GiftOutcome]) -> JSON:
    """What an HTTP gift answers, to a room or a video: its outcome (counted once,
    ``api.answers``), and ``Idempotent-Replayed`` on a replay."""
    where = f"{request.method} {request.url.path}"
    outcome = await answer(metrics.HTTP, attempt, where, metrics.GIFT_ANSWERS)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return JSON(outcome.to_dict(), headers=headers)


async def gift_from(request: Request) -> GiftOutcome:
    principal = caller(request, *GIFTING_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    body = parse(await read_json(request), GiftRequest)
    return await context(request).gifts.send(
        principal.user_id, room_id, body, now_ms(), sender_name=principal.name
    )


# Its refusals by the per-address request limit count as gifts refused too (api.limits).
GIFT_ROUTE = Route("/v1/rooms/{room_id}/gifts", send_gift, methods=["POST"])

routes = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/v1/me", me),
    Route("/v1/me/region", put_region, methods=["PUT"]),
    Route("/v1/catalog/gifts", catalog_gifts),
    Route("/v1/catalog/packages", catalog_packages),
    Route("/v1/wallet", get_wallet),
    Route("/v1/wallet/limits", put_limits, methods=["PUT"]),
    Route("/v1/wallet/ledger", wallet_ledger),
    Route("/v1/purchases", create_purchase, methods=["POST"]),
    Route("/v1/purchases/{order_id}", get_purchase),
    Route("/v1/rooms", list_rooms, methods=["GET"]),
    Route("/v1/rooms", create_room, methods=["POST"]),
    Route("/v1/rooms/{room_id}", get_room),
    Route("/v1/rooms/{room_id}/end", end_room, methods=["POST"]),
    Route("/v1/rooms/{room_id}/summary", room_summary),
    Route("/v1/rooms/{room_id}/goal", set_goal, methods=["PUT"]),
    GIFT_ROUTE,
]
# Served unless GIFTING_METRICS=0 (app.create_app).
