"""Stripe for web purchases, through Stripe's own library.

    start            a PaymentIntent for a new order (its client secret goes to the page, which
                     pays it with Stripe.js), one per order whatever the retries
    verify           a webhook's ``Stripe-Signature``, against each configured signing secret
    payment_intent   a PaymentIntent as Stripe holds it (its metadata names the order)
    refund           a whole payment back to the buyer, once: a payment no order can take

What the webhook's events do to the books is in ``server.api.stripe`` and docs/MONEY.md.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe

from server.errors import BadSignature, ProviderError
from server.providers.stripe import HEADER
from server.settings import Settings

log = logging.getLogger(__name__)

# A Stripe request that takes longer than this is given up (the library retries it, with its
# idempotency key, up to RETRIES times): the page is waiting on the order's answer.
TIMEOUT_S = 10.0
RETRIES = 2


class StripeCheckout:
    """The ``Checkout`` of server/purchases.py for Stripe, and the Stripe calls its webhook makes."""

    def __init__(self, settings: Settings) -> None:
        self.publishable_key = settings.stripe_publishable_key
        self.js_url = settings.stripe_js_url
        self._secrets = settings.stripe_webhook_secrets
        self._tolerance_s = settings.webhook_tolerance_s
        # Which books a PaymentIntent pays into: every endpoint of a Stripe account receives all
        # of its events, so each deployment acts only on the PaymentIntents it opened.
        self._books = settings.key_prefix
        self._http = stripe.HTTPXClient(timeout=TIMEOUT_S)
        self._client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base},
            http_client=self._http,
            max_network_retries=RETRIES,
        )

    def page(self) -> dict[str, str]:
        """What a page needs to load Stripe.js and pay an order's PaymentIntent."""
        return {"publishable_key": self.publishable_key, "js_url": self.js_url}

    async def start(self, order: dict[str, Any]) -> dict[str, Any]:
        """The order's PaymentIntent: its price, its order and buyer in the metadata (which
        every webhook about it carries back), and an idempotency key of the order, so that a
        retried request cannot open a second PaymentIntent for it."""
        order_id = order["order_id"]
        params: dict[str, Any] = {
            "amount": order["price"]["amount_minor"],
            "currency": order["price"]["currency"].lower(),
            "payment_method_types": ["card"],
            "metadata": {"order_id": order_id, "user_id": order["user_id"], "books": self._books},
        }
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": f"order-{order_id}"},
            )
        except stripe.StripeError as exc:
            raise provider_error(f"no PaymentIntent for order {order_id!r}", exc) from None
        return {
            "stripe": {
                "client_secret": intent.client_secret,
                "payment_intent": intent.id,
                **self.page(),
            }
        }

    def order_of(self, metadata: dict[str, Any]) -> str | None:
        """The order a PaymentIntent's metadata names, if this server opened it."""
        order_id = metadata.get("order_id")
        if not isinstance(order_id, str) or not order_id or metadata.get("books") != self._books:
            return None
        return order_id

    def verify(self, body: bytes, header: str | None) -> None:
        """``BadSignature`` unless ``header`` signs ``body`` with one of the configured
        secrets (several while one is rotated), recently enough (``webhook_tolerance_s``)."""
        if not header:
            raise BadSignature(f"missing {HEADER} header")
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSignature(f"{HEADER} cannot match a body that is not UTF-8") from None
        problem = "no signing secret configured"
        for secret in self._secrets:
            try:
                stripe.WebhookSignature.verify_header(body, header, secret, self._tolerance_s)
            except stripe.SignatureVerificationError as exc:
                problem = str(exc.user_message or exc)
                continue
            return
        raise BadSignature(f"{HEADER} refused: {problem}")

    async def payment_intent(self, payment_intent_id: str) -> dict[str, Any]:
        """The PaymentIntent as Stripe holds it now."""
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError as exc:
            raise provider_error(f"no PaymentIntent {payment_intent_id!r}", exc) from None
        found: dict[str, Any] = intent.to_dict()
        return found

    async def refund(self, payment_intent_id: str, reason: str) -> str:
        """Refund the whole payment, once (an idempotency key of the PaymentIntent; a payment
        already refunded counts as done). The refund's id, or ``already_refunded``."""
        try:
            refund = await self._client.v1.refunds.create_async(
                {"payment_intent": payment_intent_id, "metadata": {"reason": reason}},
                options={"idempotency_key": f"refund-{payment_intent_id}"},
            )
        except stripe.InvalidRequestError as exc:
            if exc.code == "charge_already_refunded":
                return "already_refunded"
            raise provider_error(f"no refund of {payment_intent_id!r}", exc) from None
        except stripe.StripeError as exc:
            raise provider_error(f"no refund of {payment_intent_id!r}", exc) from None
        refund_id: str = refund.id
        return refund_id

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def provider_error(what: str, exc: stripe.StripeError) -> ProviderError:
    """A Stripe failure as the caller sees it; the library's details go to the log."""
    log.warning("%s: %s (%s, status %s)", what, exc.user_message or exc, type(exc).__name__, exc.http_status)
    kind = "could not be reached" if isinstance(exc, stripe.APIConnectionError) else "answered an error"
    return ProviderError(f"{what}: Stripe {kind}; try again later")
