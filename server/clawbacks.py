"""Refunds and chargebacks: take the coins back, then the creators' still-pending diamonds.

The clawback itself is one script in the buyer's slot (``claw_back.lua``): coins out (the
balance may go negative), the order marked, and the gifts to reverse queued beside it. Each
queued reversal is then applied in its creator's slot and cleared. As with gift delivery,
a crash in between leaves the queue behind and the sweeper finishes it. The policy is
described in docs/MONEY.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from server.store import Store
from server.store.payments import ClawbackOutcome

log = logging.getLogger(__name__)

# Reversals applied together, in a few round trips, before their queue entries are cleared.
SETTLE_BATCH = 500


@dataclass(frozen=True)
class Clawbacks:
    store: Store
    window_ms: int  # Settings.clawback_window_ms

    async def apply(self, order_id: str, payment_id: str, reason: str, now_ms: int) -> ClawbackOutcome:
        """Claw back ``order_id`` for ``reason`` (``refunded`` or ``charged_back``)."""
        outcome = await self.store.payments.claw_back(order_id, payment_id, reason, now_ms, self.window_ms)
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
        # A clawback may take thousands of gifts: their reversals go out a batch at a time.
        for start in range(0, len(pending), SETTLE_BATCH):
            chunk = pending[start : start + SETTLE_BATCH]
            outcomes = await asyncio.gather(
                *(
                    self.store.earnings.reverse(creator_id, event_id, order_id, now_ms)
                    for event_id, creator_id, order_id in chunk
                )
            )
            settled = [
                event_id
                for (event_id, _, _), (outcome, _) in zip(chunk, outcomes, strict=True)
                if outcome == "settled"
            ]
            if settled:
                log.warning(
                    "%d gift(s) from %s were clawed back with no pending diamonds left to take "
                    "(released from the hold, or none earned), e.g. %s",
                    len(settled),
                    buyer_id,
                    ", ".join(settled[:3]),
                )
            total += sum(diamonds for _, diamonds in outcomes)
            await self.store.replicated(users=sorted({creator_id for _, creator_id, _ in chunk}))
            await self.store.reversals.clear(buyer_id, [event_id for event_id, _, _ in chunk])
        return total

    async def sweep(self, now_ms: int) -> int:
        settled = 0
        async for buyer_id in self.store.reversals.buyers():
            settled += await self.settle(buyer_id, now_ms)
        return settled
