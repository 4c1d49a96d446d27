"""Refunds and chargebacks: take the coins back, then the creators' still-pending diamonds.

The clawback itself is one script in the buyer's slot (``claw_back.lua``): coins out (the
balance may go negative), the order marked, and the gifts to reverse queued beside it. Each
queued reversal is then applied in its creator's slot and cleared. As with gift delivery,
a crash in between leaves the queue behind and the sweeper finishes it. The policy is
described in docs/MONEY.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from server.store import Store
from server.store.payments import ClawbackOutcome

log = logging.getLogger(__name__)

REASONS = {"payment.refunded": "refunded", "payment.disputed": "charged_back"}


@dataclass(frozen=True)
class Clawbacks:
    store: Store
    window_ms: int  # Settings.clawback_window_ms

    async def apply(self, order_id: str, payment_id: str, event_type: str, now_ms: int) -> ClawbackOutcome:
        outcome = await self.store.payments.claw_back(
            order_id, payment_id, REASONS[event_type], now_ms, self.window_ms
        )
        await self.store.replicated(users=[outcome.user_id])
        try:
            await self.settle(outcome.user_id, now_ms)
        except Exception:
            log.exception("reversals after the clawback of %s deferred to the sweeper", order_id)
        return outcome

    async def settle(self, buyer_id: str, now_ms: int) -> int:
        """Apply every reversal queued for ``buyer_id``; how many diamonds came back."""
        total = 0
        pending = await self.store.reversals.pending(buyer_id)
        if pending:
            # Reverse no credit for a clawback the replicas might not have.
            await self.store.replicated(users=[buyer_id])
        for event_id, creator_id, order_id in pending:
            outcome, diamonds = await self.store.earnings.reverse(creator_id, event_id, order_id, now_ms)
            if outcome == "settled":
                log.warning(
                    "gift %s from %s was clawed back with no pending diamonds left to take "
                    "(released from the hold, or none earned)",
                    event_id,
                    buyer_id,
                )
            total += diamonds
            await self.store.replicated(users=[creator_id])
            await self.store.reversals.clear(buyer_id, event_id)
        return total

    async def sweep(self, now_ms: int) -> int:
        settled = 0
        async for buyer_id in self.store.reversals.buyers():
            settled += await self.settle(buyer_id, now_ms)
        return settled
