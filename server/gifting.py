"""The gift path, shared by HTTP and WebSocket: check the room, price, debit, credit.

The room check is the point a gift is accepted against: a gift whose debit started before
the room ended still reaches the creator. The creator credit runs right after the debit;
if it fails, the outbox entry the debit wrote is applied later by the sweeper.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

from server.domain.catalog import Catalog
from server.domain.ids import new_id
from server.domain.money import gift_fingerprint, price_gift, utc_day
from server.domain.requests import GiftRequest
from server.errors import Conflict
from server.store import Store
from server.store.records import CreatorCredit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GiftOutcome:
    gift_event_id: str
    coins: int
    cost: int
    replayed: bool

    def to_dict(self) -> dict[str, object]:
        return {"gift_event_id": self.gift_event_id, "coins": self.coins, "cost": self.cost}


@dataclass(frozen=True)
class GiftService:
    store: Store
    catalog: Catalog
    creator_share: Fraction
    idempotency_ttl_s: int

    async def send(self, sender_id: str, room_id: str, request: GiftRequest, now_ms: int) -> GiftOutcome:
        gift = self.catalog.gift(request.gift_id)
        fingerprint = gift_fingerprint(room_id, gift.id, request.count)
        room = await self.store.rooms.get(room_id)
        if not room.live:
            # A retry of a gift accepted before the room ended still gets its first answer.
            earlier = await self.store.wallets.replay(sender_id, request.idempotency_key, fingerprint)
            if earlier is not None:
                return GiftOutcome(earlier.event_id, earlier.coins, earlier.cost, replayed=True)
            raise Conflict(f"room {room_id!r} has ended", code="room_ended")
        if room.creator_id == sender_id:
            raise Conflict("creators cannot send gifts to their own room", code="self_gift")
        price = price_gift(gift, request.count, self.creator_share)
        credit = CreatorCredit(
            event_id=new_id("g"),
            creator_id=room.creator_id,
            room_id=room_id,
            sender_id=sender_id,
            gift_id=gift.id,
            count=request.count,
            coins=price.coins,
            diamonds=price.diamonds,
            ts=now_ms,
        )
        debit = await self.store.wallets.debit_gift(
            credit=credit,
            idempotency_key=request.idempotency_key,
            fingerprint=fingerprint,
            day=utc_day(now_ms),
            idempotency_ttl_s=self.idempotency_ttl_s,
        )
        if not debit.replayed:
            try:
                await self.store.earnings.apply(credit)
            except Exception:
                # The debit stands and the outbox holds the credit; the sweeper finishes it.
                log.exception("creator credit for %s deferred to the outbox", credit.event_id)
        return GiftOutcome(debit.event_id, debit.coins, debit.cost, debit.replayed)
