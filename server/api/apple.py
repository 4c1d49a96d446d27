"""The App Store: purchases the app submits, and Apple's server notifications.

Both feed the one purchase path (``server.purchases.Purchases``): a verified consumable
transaction is recorded as an order of its own (``apple_<transactionId>``) and credited
once; a refund claws it back; a reversed refund restores it. Apple's signature is the only
authentication of a notification. A server without the App Store configured answers both
routes 503 ``provider_unavailable``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, Context, caller, context, now_ms, read_json
from server.domain.requests import AppleNotification, AppleTransactionRequest, parse
from server.errors import InvalidRequest, NotFound, ProviderUnavailable
from server.providers.apple import PROVIDER, SETTINGS, Transaction
from server.store.payments import PAYMENT_CLAIM_TTL_S

if TYPE_CHECKING:  # imported only when configured (server.providers)
    from server.providers.apple_client import AppleStore

log = logging.getLogger(__name__)


def apple_store(ctx: Context) -> AppleStore:
    if ctx.apple is None:
        raise ProviderUnavailable.not_configured(PROVIDER, settings=SETTINGS)
    return ctx.apple


async def submit_transaction(request: Request) -> JSON:
    """Credit a transaction the caller bought in the app, once; the order it is recorded as."""
    principal = caller(request)
    ctx = context(request)
    store = apple_store(ctx)
    body = parse(await read_json(request), AppleTransactionRequest)
    transaction = await store.transaction(body.signed_transaction)
    if transaction.revoked or await ctx.store.redis.exists(
        ctx.store.keys.order_revoked(transaction.order_id)
    ):
        raise InvalidRequest(
            "the App Store refunded or revoked this transaction: nothing credited", code="transaction_revoked"
        )
    package = store.package(transaction)
    outcome = await ctx.purchases.record_and_credit(
        PROVIDER, principal.user_id, transaction.order_id, package, transaction.payment_id, now_ms()
    )
    order = await ctx.store.payments.get_order(principal.user_id, transaction.order_id)
    return JSON({**order, "transaction_id": transaction.transaction_id, "credited": outcome.credited})


async def notification(request: Request) -> JSON:
    """An App Store Server Notification V2: refunds, reversed refunds, tests."""
    ctx = context(request)
    store = apple_store(ctx)
    body = parse(await read_json(request), AppleNotification)
    note = await store.notification(body.signedPayload)
    seen = ctx.store.keys.notification_claim(PROVIDER, note.notification_id)
    if await ctx.store.redis.exists(seen):
        # Apple redelivers until answered 200; a notification handled before changes nothing.
        return JSON({"received": True, "handled": True, "replayed": True})
    answer = await handle(ctx, note.notification_type, note.transaction)
    await ctx.store.redis.set(seen, note.notification_type, ex=PAYMENT_CLAIM_TTL_S)
    return JSON({"received": True, **answer})


async def handle(ctx: Context, kind: str, transaction: Transaction | None) -> dict[str, object]:
    """What a verified notification of ``kind`` does; ``handled`` False for the kinds a
    consumable's books have no use for (they are acknowledged all the same)."""
    if kind == "TEST":
        return {"handled": True}
    if kind == "CONSUMPTION_REQUEST":
        log.info(
            "App Store consumption request for transaction %s: logged, no answer sent to Apple",
            transaction.transaction_id if transaction else "?",
        )
        return {"handled": True}
    if kind not in ("REFUND", "REFUND_REVERSED") or transaction is None:
        return {"handled": False}
    try:
        if kind == "REFUND":
            clawback = await ctx.purchases.claw_back(
                PROVIDER, transaction.order_id, transaction.payment_id, "refunded", now_ms()
            )
            return {"handled": True, "clawed_back": clawback.applied}
        restore = await ctx.purchases.restore(
            PROVIDER, transaction.order_id, transaction.payment_id, now_ms()
        )
        return {"handled": True, "restored": restore.restored}
    except NotFound:
        # The app never submitted it: nothing was credited, so nothing is taken back or put
        # back. A refund is remembered, so the copy signed before it is refused if submitted.
        revoked = ctx.store.keys.order_revoked(transaction.order_id)
        if kind == "REFUND":
            await ctx.store.redis.set(revoked, "refunded")
        else:
            await ctx.store.redis.delete(revoked)
        log.warning(
            "App Store %s for transaction %s, which was never credited here: nothing credited or taken",
            kind,
            transaction.transaction_id,
        )
        return {"handled": True, "clawed_back" if kind == "REFUND" else "restored": False}


routes = [
    Route("/v1/purchases/apple", submit_transaction, methods=["POST"]),
    Route("/v1/payments/apple/notifications", notification, methods=["POST"]),
]
