"""The one path every payment provider feeds: open an order, credit it once, take it back.

A provider (the sandbox's signed webhook, Stripe, the App Store, Google Play) only verifies
what its platform says and names the order, the payment and the amount; the books are kept
here and in the Lua scripts behind ``store.payments``, the same for all of them:

    open      a pending order, in the price book's amount, expiring unpaid (``order_ttl_s``)
    credit    its coins once per order and once per payment id (``credit_purchase.lua``)
    claw_back a refund or dispute: the coins back out, the buyer's recent gifts reversed
    restore   a refund the provider reversed: the coins back in, once (``restore_purchase.lua``)

A provider whose payment is taken before the server hears of it (the App Store, Google Play:
the app submits the signed transaction or the purchase token) records its order with
``record_and_credit``: the order's id is derived from the provider's transaction, so a
second submission finds the same order, and it is credited through ``credit`` like any other.

Which providers a server takes is configuration: ``checkouts`` holds the web providers
configured (by name); any other answers ``provider_unavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from server import metrics
from server.clawbacks import Clawbacks
from server.domain.catalog import Package
from server.domain.ids import new_id
from server.errors import Conflict, ProviderUnavailable
from server.settings import Settings
from server.store import Store
from server.store.payments import ClawbackOutcome, PaymentOutcome, RestoreOutcome


class Checkout(Protocol):
    """A web provider's side of opening an order: what the page needs to pay it."""

    async def start(self, order: dict[str, Any]) -> dict[str, Any]:
        """Fields added to the new order's answer (Stripe: the PaymentIntent's client secret)."""
        ...

    async def close(self) -> None:
        """Release what the provider's client holds (connections), at shutdown."""
        ...


class SandboxCheckout:
    """The server's own signed webhook (``api.payments``), on when ``GIFTING_WEBHOOK_SECRET`` is
    set: the demo's sandbox pays through it, and so can a platform's own payment service."""

    async def start(self, order: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None


@dataclass
class Purchases:
    store: Store
    settings: Settings
    clawbacks: Clawbacks
    checkouts: Mapping[str, Checkout] = field(default_factory=dict)

    @property
    def web(self) -> str:
        """The provider an order is paid through when the request names none: Stripe where it
        is configured, else the signed webhook."""
        return "stripe" if "stripe" in self.checkouts else "sandbox"

    def checkout(self, provider: str) -> Checkout:
        found = self.checkouts.get(provider)
        if found is None:
            raise ProviderUnavailable.not_configured(provider, configured=self.checkouts)
        return found

    async def open(self, user_id: str, package: Package, provider: str | None, now_ms: int) -> dict[str, Any]:
        """A pending order paid through ``provider`` (``web`` if None), with what its checkout needs."""
        provider = provider or self.web
        checkout = self.checkout(provider)
        order_id = new_id("ord")
        order = await self.store.payments.create_order(
            user_id,
            order_id,
            package,
            now_ms,
            ttl_s=self.settings.order_ttl_s,
            max_pending=self.settings.max_pending_orders,
            provider=provider,
        )
        # The order is paid elsewhere next; its payment must find it on whichever master is up.
        await self.store.replicated(users=[user_id], keys=[self.store.keys.order_owner(order_id)])
        # The checkout also learns the buyer (a provider's records name it); the answer does not.
        return {**order, **await checkout.start({**order, "user_id": user_id})}

    async def credit(
        self, provider: str, order_id: str, payment_id: str, amount_minor: int, currency: str, now_ms: int
    ) -> PaymentOutcome:
        """Credit a payment ``provider`` verified, once; redeliveries change nothing."""
        outcome = await self.store.payments.credit_payment(
            provider, order_id, payment_id, amount_minor, currency, now_ms
        )
        # The provider stops redelivering once answered: the credit must be on the replicas first.
        await self.store.replicated(users=[outcome.user_id], keys=[self.store.keys.payment_claim(payment_id)])
        if outcome.credited:
            metrics.PURCHASES.labels(provider).inc()
            metrics.COINS_PURCHASED.labels(provider).inc(outcome.coins)
        return outcome

    async def record_and_credit(
        self, provider: str, user_id: str, order_id: str, package: Package, payment_id: str, now_ms: int
    ) -> PaymentOutcome:
        """Record the order ``order_id`` of ``user_id`` for a payment ``provider`` took already,
        then ``credit`` it in the price book's amount of ``package``, once. Submitted again by
        its owner, it credits nothing; by anyone else, ``transaction_claimed`` and nothing
        changes."""
        owner = await self.store.payments.claim_order(
            user_id, order_id, package, now_ms, ttl_s=self.settings.order_ttl_s, provider=provider
        )
        if owner != user_id:
            raise Conflict(
                f"this {provider} transaction was credited to another account; nothing credited",
                code="transaction_claimed",
            )
        await self.store.replicated(users=[user_id], keys=[self.store.keys.order_owner(order_id)])
        return await self.credit(
            provider, order_id, payment_id, package.amount_minor, package.currency, now_ms
        )

    async def restore(self, provider: str, order_id: str, payment_id: str, now_ms: int) -> RestoreOutcome:
        """Put back a refunded purchase's coins after ``provider`` reversed the refund, once."""
        outcome = await self.store.payments.restore(order_id, payment_id, now_ms)
        await self.store.replicated(users=[outcome.user_id])
        if outcome.restored:
            metrics.RESTORES.labels(provider).inc()
        return outcome

    async def claw_back(
        self, provider: str, order_id: str, payment_id: str, reason: str, now_ms: int
    ) -> ClawbackOutcome:
        """Take back a purchase ``provider`` refunded (``refunded``) or lost a dispute over
        (``charged_back``), once; redeliveries change nothing."""
        outcome = await self.clawbacks.apply(order_id, payment_id, reason, now_ms)
        if outcome.applied:
            metrics.CLAWBACKS.labels(provider, reason).inc()
        return outcome
