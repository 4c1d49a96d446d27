"""The sandbox provider: its signed webhook, and the demo-only route that pays an order by
calling it. Every provider feeds the same ``Purchases`` (server/purchases.py)."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, caller, context, decode_json, now_ms, read_body
from server.api.stripe import configured_stripe
from server.domain import webhooks
from server.domain.ids import check_id, new_id
from server.domain.requests import PaymentData, WebhookEvent, parse
from server.errors import NotFound

# The sandbox's clawback events, and what each records.
REASONS = {"payment.refunded": "refunded", "payment.disputed": "charged_back"}
HANDLED_EVENTS = ("payment.succeeded", *REASONS)
PROVIDER = "sandbox"

log = logging.getLogger(__name__)


async def payment_webhook(request: Request) -> JSON:
    ctx = context(request)
    ctx.purchases.checkout(PROVIDER)  # provider_unavailable unless GIFTING_WEBHOOK_SECRET is set
    body = await read_body(request)
    webhooks.verify(
        body,
        request.headers.get(webhooks.HEADER),
        ctx.settings.webhook_secret,
        int(time.time()),
        ctx.settings.webhook_tolerance_s,
    )
    event = parse(decode_json(body), WebhookEvent)
    if event.type not in HANDLED_EVENTS:
        # Acknowledge so the provider stops redelivering an event we do not act on.
        return JSON({"received": True, "handled": False})
    data = parse(event.data, PaymentData)
    if event.type in REASONS:
        clawback = await ctx.purchases.claw_back(
            PROVIDER, data.order_id, data.payment_id, REASONS[event.type], now_ms()
        )
        return JSON({"received": True, "handled": True, "clawed_back": clawback.applied})
    try:
        outcome = await ctx.purchases.credit(
            PROVIDER, data.order_id, data.payment_id, data.amount_minor, data.currency, now_ms()
        )
    except NotFound:
        # Never created, or expired unpaid (GIFTING_ORDER_TTL_S). The 404 makes the provider
        # retry and then flag the payment; it must not pass unseen (docs/MONEY.md).
        log.warning(
            "payment %r for order %r: no such order (expired unpaid, or never created); "
            "answered 404, nothing credited: refund or credit the payment by hand",
            data.payment_id,
            data.order_id,
        )
        raise
    return JSON({"received": True, "handled": True, "credited": outcome.credited})


async def payment_providers(request: Request) -> JSON:
    """Which providers this server takes payments through, and what a page needs for them:
    ``web`` is the one a web page pays with (Stripe when configured, else the sandbox)."""
    ctx = context(request)
    checkouts = ctx.purchases.checkouts
    answer: dict[str, Any] = {
        "web": ctx.purchases.web,
        "providers": sorted(
            [
                *checkouts,
                *(["apple"] if ctx.apple is not None else []),
                *(["google"] if ctx.google is not None else []),
            ]
        ),
    }
    stripe = configured_stripe(ctx)
    if stripe is not None:
        answer["stripe"] = stripe.page()
    return JSON(answer)


async def sandbox_pay(request: Request) -> JSON:
    """Pay an order in the sandbox: sign a ``payment.succeeded`` webhook and deliver it to ourselves."""
    principal = caller(request)
    ctx = context(request)
    order_id = check_id(request.path_params["order_id"], "order_id")
    order = await ctx.store.payments.get_order(principal.user_id, order_id)
    payment_id = new_id("pay")
    event = {
        "id": new_id("evt"),
        "type": "payment.succeeded",
        "data": {
            "order_id": order_id,
            "payment_id": payment_id,
            "amount_minor": order["price"]["amount_minor"],
            "currency": order["price"]["currency"],
        },
    }
    body = orjson.dumps(event)
    signature = webhooks.sign(body, ctx.settings.webhook_secret, int(time.time()))
    reply = await sandbox_client(request).post(
        f"{self_url(ctx.settings.host, ctx.settings.port)}/v1/payments/webhook",
        content=body,
        headers={webhooks.HEADER: signature, "content-type": "application/json"},
    )
    if reply.status_code >= 300:
        return JSON(reply.json(), status_code=reply.status_code)
    return JSON({"payment_id": payment_id, "order_id": order_id})


def sandbox_client(request: Request) -> httpx.AsyncClient:
    """One client for the app's lifetime: building one loads the CA store (~20 ms)."""
    client: httpx.AsyncClient | None = getattr(request.app.state, "sandbox_client", None)
    if client is None:
        client = request.app.state.sandbox_client = httpx.AsyncClient(timeout=10)
    return client


def self_url(host: str, port: int) -> str:
    """How this server reaches its own listening socket."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


routes = [
    Route("/v1/payments/webhook", payment_webhook, methods=["POST"]),
    Route("/v1/payments/providers", payment_providers, methods=["GET"]),
]
sandbox_routes = [Route("/v1/sandbox/orders/{order_id}/pay", sandbox_pay, methods=["POST"])]
