"""Stripe's webhook: verified with Stripe's library, then fed to ``Purchases`` like every
provider's (server/purchases.py). The rules are in docs/MONEY.md ("Stripe"):

    payment_intent.succeeded   credit the order its metadata names, once per PaymentIntent;
                               a payment no order can take (expired unpaid, never opened,
                               paid already, opened for another provider) is refunded
    charge.refunded            a full refund takes the purchase back ("refunded"); a partial
                               one is logged and changes nothing
    charge.dispute.created     takes the purchase back ("charged_back")

Stripe redelivers any event not answered 2xx, for days: a refund or dispute that arrives
before its payment was credited answers 409 ``order_not_paid`` so that it comes again; every
other outcome is final and answered 200 with what it did, including a payment whose amount
does not match its order (the order is flagged for review).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import msgspec
from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, Context, context, decode_json, now_ms, read_body
from server.domain.requests import parse
from server.errors import Conflict, NotFound, ProviderUnavailable
from server.providers.stripe import HEADER, PROVIDER, SETTINGS

if TYPE_CHECKING:  # imported only when configured (server.providers)
    from server.providers.stripe_client import StripeCheckout

log = logging.getLogger(__name__)

# Refusals of a verified payment after which the money cannot stay: it goes back to the buyer.
REFUND_ON = ("provider_mismatch", "order_already_paid")
# Refusals that keep the money and flag the order for a person to decide.
FLAG_ON = ("amount_mismatch", "order_flagged")
DISPUTE = "charge.dispute.created"
HANDLED_EVENTS = ("payment_intent.succeeded", "charge.refunded", DISPUTE)


class StripeEvent(msgspec.Struct, frozen=True):
    """The part of a Stripe event read here; Stripe adds fields freely."""

    id: str
    type: str
    data: dict[str, Any]


class StripeObject(msgspec.Struct, frozen=True):
    """The fields read from an event's object: a PaymentIntent, a Charge or a Dispute."""

    id: str
    object: str
    amount: int | None = None
    amount_received: int | None = None
    amount_refunded: int | None = None
    currency: str | None = None
    payment_intent: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)


def configured_stripe(ctx: Context) -> StripeCheckout | None:
    """Stripe's checkout, if this server is configured for it: the one checkout
    registered under its name (``app.checkouts``)."""
    return cast("StripeCheckout | None", ctx.purchases.checkouts.get(PROVIDER))


def stripe_of(ctx: Context) -> StripeCheckout:
    checkout = configured_stripe(ctx)
    if checkout is None:
        raise ProviderUnavailable.not_configured(PROVIDER, settings=SETTINGS)
    return checkout


async def stripe_webhook(request: Request) -> JSON:
    ctx = context(request)
    stripe = stripe_of(ctx)
    body = await read_body(request)
    stripe.verify(body, request.headers.get(HEADER))
    event = parse(decode_json(body), StripeEvent)
    if event.type not in HANDLED_EVENTS:
        # Acknowledged, or Stripe would redeliver an event this server does not act on.
        return JSON({"received": True, "handled": False})
    thing = parse(event.data.get("object"), StripeObject)
    if event.type == "payment_intent.succeeded":
        return await payment_succeeded(ctx, stripe, event, thing)
    if event.type == "charge.refunded":
        if thing.amount is None or thing.amount_refunded is None or thing.amount_refunded < thing.amount:
            log.warning(
                "Stripe event %s: partial refund of %s of %s on charge %s (PaymentIntent %s): "
                "no coins taken back (only a full refund claws back a purchase)",
                event.id,
                thing.amount_refunded,
                thing.amount,
                thing.id,
                thing.payment_intent,
            )
            return JSON({"received": True, "handled": True, "clawed_back": False, "partial": True})
        return await take_back(ctx, stripe, event, thing.payment_intent, "refunded")
    return await take_back(ctx, stripe, event, thing.payment_intent, "charged_back")


async def payment_succeeded(
    ctx: Context, stripe: StripeCheckout, event: StripeEvent, intent: StripeObject
) -> JSON:
    order_id = stripe.order_of(intent.metadata)
    if order_id is None:
        # Not a PaymentIntent of this server: another deployment's or product's on the account.
        log.info("Stripe event %s: PaymentIntent %s is not this server's; ignored", event.id, intent.id)
        return JSON({"received": True, "handled": False})
    amount = intent.amount_received if intent.amount_received is not None else intent.amount
    if amount is None or not intent.currency:
        return JSON({"received": True, "handled": False})
    try:
        outcome = await ctx.purchases.credit(
            PROVIDER, order_id, intent.id, amount, intent.currency.upper(), now_ms()
        )
    except NotFound:
        return await refund(stripe, event, intent.id, order_id, "no_order")
    except Conflict as exc:
        if exc.code in REFUND_ON:
            return await refund(stripe, event, intent.id, order_id, exc.code)
        if exc.code in FLAG_ON:
            log.warning(
                "Stripe event %s: PaymentIntent %s of %s %s for order %r: %s; kept for review, "
                "nothing credited",
                event.id,
                intent.id,
                amount,
                intent.currency,
                order_id,
                exc.message,
            )
            return JSON(
                {
                    "received": True,
                    "handled": True,
                    "credited": False,
                    "flagged": True,
                    "reason": exc.code,
                }
            )
        raise
    return JSON({"received": True, "handled": True, "credited": outcome.credited})


async def refund(
    stripe: StripeCheckout, event: StripeEvent, intent_id: str, order_id: str, reason: str
) -> JSON:
    """Give back a payment no order can take, so the buyer is not charged for nothing."""
    refund_id = await stripe.refund(intent_id, reason)
    log.warning(
        "Stripe event %s: PaymentIntent %s for order %r refunded (%s): %s; nothing credited",
        event.id,
        intent_id,
        order_id,
        refund_id,
        reason,
    )
    return JSON({"received": True, "handled": True, "credited": False, "refunded": True, "reason": reason})


async def take_back(
    ctx: Context, stripe: StripeCheckout, event: StripeEvent, intent_id: str | None, reason: str
) -> JSON:
    """Claw back the purchase paid by ``intent_id``, found by its payment claim."""
    if not intent_id:
        return JSON({"received": True, "handled": False})
    order_id = await ctx.store.payments.order_for_payment(intent_id)
    if order_id is None:
        return await never_credited(ctx, stripe, event, intent_id, reason)
    try:
        outcome = await ctx.purchases.claw_back(PROVIDER, order_id, intent_id, reason, now_ms())
    except Conflict as exc:
        if exc.code == "order_not_paid" and await ctx.store.payments.order_state(order_id) == "pending":
            raise  # its payment is being credited: Stripe redelivers this event later
        if exc.code not in ("order_not_paid", "payment_mismatch"):
            raise
        log.warning("Stripe event %s (%s of %s): %s; nothing to take back", event.id, reason, intent_id, exc)
        return JSON({"received": True, "handled": True, "clawed_back": False, "reason": exc.code})
    return JSON({"received": True, "handled": True, "clawed_back": outcome.applied})


async def never_credited(
    ctx: Context, stripe: StripeCheckout, event: StripeEvent, intent_id: str, reason: str
) -> JSON:
    """A refund or dispute of a payment this server has credited to no order: before its
    ``payment_intent.succeeded`` was processed (409, to come again), or of a payment that no
    order took (refunded by this server, or not one of its own): nothing to take back."""
    order_id = stripe.order_of((await stripe.payment_intent(intent_id)).get("metadata") or {})
    if order_id is None:
        return JSON({"received": True, "handled": False})
    state = await ctx.store.payments.order_state(order_id)
    if state == "pending":
        raise Conflict(
            f"order {order_id!r} is pending: PaymentIntent {intent_id} was not credited yet, so "
            f"there are no coins to take back ({reason}); deliver the event again later",
            code="order_not_paid",
        )
    log.warning(
        "Stripe event %s (%s of %s): no order holds this payment (order %r is %s); nothing to take back",
        event.id,
        reason,
        intent_id,
        order_id,
        state or "gone",
    )
    return JSON({"received": True, "handled": True, "clawed_back": False, "reason": "not_credited"})


routes = [Route("/v1/payments/stripe/webhook", stripe_webhook, methods=["POST"])]
