"""Google Play: purchases the app submits, and Google's real-time developer notifications.

Both feed the one purchase path (``server.purchases.Purchases``): a purchased one-time
product, as Google's API reports it, is recorded as an order of its own (``google_<hash of
the purchase token>``), credited once, then consumed; a voided purchase (refunded) claws it
back. A notification is authenticated by the OIDC token of its Pub/Sub push. A server
without Google Play configured answers both routes 503 ``provider_unavailable``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, Context, caller, context, now_ms, read_json
from server.domain.requests import GoogleNotification, GooglePurchaseRequest, parse
from server.errors import Conflict, InvalidRequest, NotFound, ProviderUnavailable
from server.providers.google import (
    FULL_REFUND,
    ONE_TIME_PRODUCT_CANCELED,
    PENDING,
    PRODUCT_TYPE_ONE_TIME,
    PROVIDER,
    PURCHASED,
    SETTINGS,
    DeveloperNotification,
    VoidedPurchase,
    order_id_of,
    payment_id_of,
)
from server.store.payments import PAYMENT_CLAIM_TTL_S

if TYPE_CHECKING:  # imported only when configured (server.providers)
    from server.providers.google_client import GooglePlay

log = logging.getLogger(__name__)


def google_play(ctx: Context) -> GooglePlay:
    if ctx.google is None:
        raise ProviderUnavailable.not_configured(PROVIDER, settings=SETTINGS)
    return ctx.google


async def submit_purchase(request: Request) -> JSON:
    """Credit a one-time product the caller bought in the app, once, and consume it; the
    order it is recorded as."""
    principal = caller(request)
    ctx = context(request)
    play = google_play(ctx)
    body = parse(await read_json(request), GooglePurchaseRequest)
    purchase = await play.purchase(body.product_id, body.purchase_token)
    if purchase.state == PENDING:
        raise Conflict(
            "the Google Play purchase is pending (not paid yet): nothing credited; submit it again "
            "once it is purchased",
            code="purchase_pending",
        )
    if purchase.state != PURCHASED:
        raise Conflict("the Google Play purchase was canceled: nothing credited", code="purchase_canceled")
    if await ctx.store.redis.exists(ctx.store.keys.order_revoked(purchase.order_id)):
        raise InvalidRequest(
            "Google Play refunded or voided this purchase: nothing credited", code="transaction_revoked"
        )
    package = play.package(purchase)
    outcome = await ctx.purchases.record_and_credit(
        PROVIDER, principal.user_id, purchase.order_id, package, purchase.payment_id, now_ms()
    )
    # Credited now or before, to this caller: a purchase not consumed yet is consumed now
    # (a consume that failed last time is tried again); the coins stay either way.
    consumed = purchase.consumed or await play.consume(purchase)
    order = await ctx.store.payments.get_order(principal.user_id, purchase.order_id)
    return JSON(
        {
            **order,
            "google_order_id": purchase.google_order_id,
            "credited": outcome.credited,
            "consumed": consumed,
        }
    )


async def notification(request: Request) -> JSON:
    """A Google Play real-time developer notification, pushed by Pub/Sub."""
    ctx = context(request)
    play = google_play(ctx)
    await play.push(request.headers.get("authorization"))
    body = parse(await read_json(request), GoogleNotification)
    note = play.notification(body.message.data)
    seen = ctx.store.keys.notification_claim(PROVIDER, body.message.messageId)
    if await ctx.store.redis.exists(seen):
        # Pub/Sub redelivers until answered 2xx; a message handled before changes nothing.
        return JSON({"received": True, "handled": True, "replayed": True})
    answer = await handle(ctx, play, note)
    await ctx.store.redis.set(seen, "1", ex=PAYMENT_CLAIM_TTL_S)
    return JSON({"received": True, **answer})


async def handle(ctx: Context, play: GooglePlay, note: DeveloperNotification) -> dict[str, object]:
    """What a verified notification does; ``handled`` False for what a consumable's books
    have no use for (acknowledged all the same, so that Pub/Sub stops redelivering it)."""
    if note.packageName != play.package_name:
        log.warning("Google Play notification for another app %r: ignored", note.packageName[:100])
        return {"handled": False}
    if note.testNotification is not None:
        return {"handled": True}
    if note.oneTimeProductNotification is not None:
        product = note.oneTimeProductNotification
        if product.notificationType == ONE_TIME_PRODUCT_CANCELED:
            log.info(
                "Google Play canceled a pending purchase of %r (order %s): nothing was credited",
                product.sku[:100],
                order_id_of(product.purchaseToken),
            )
        # Purchased: the app submits it (POST /v1/purchases/google), which credits it.
        return {"handled": True}
    voided = note.voidedPurchaseNotification
    if voided is None or voided.productType != PRODUCT_TYPE_ONE_TIME or not voided.purchaseToken:
        return {"handled": False}
    return await void(ctx, voided)


async def void(ctx: Context, voided: VoidedPurchase) -> dict[str, object]:
    """A refunded (voided) purchase: its coins taken back, once."""
    order_id = order_id_of(voided.purchaseToken)
    if voided.refundType != FULL_REFUND:
        # Some of a multi-quantity purchase: the coins stay, as for any partial refund.
        log.warning(
            "Google Play refunded part of purchase %s (order %s): nothing taken back",
            voided.orderId or "?",
            order_id,
        )
        return {"handled": True, "clawed_back": False}
    # Remembered, so the purchase is refused if submitted (again) later.
    await ctx.store.redis.set(ctx.store.keys.order_revoked(order_id), "refunded")
    try:
        clawback = await ctx.purchases.claw_back(
            PROVIDER, order_id, payment_id_of(voided.orderId, voided.purchaseToken), "refunded", now_ms()
        )
        return {"handled": True, "clawed_back": clawback.applied}
    except NotFound:
        # The app never submitted it: nothing was credited, so nothing is taken back.
        log.warning(
            "Google Play refunded purchase %s (order %s), which was never credited here: nothing taken",
            voided.orderId or "?",
            order_id,
        )
        return {"handled": True, "clawed_back": False}


routes = [
    Route("/v1/purchases/google", submit_purchase, methods=["POST"]),
    Route("/v1/payments/google/notifications", notification, methods=["POST"]),
]
