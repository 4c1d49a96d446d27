"""The gift path, shared by HTTP and WebSocket: check the room, price, debit, deliver.

A gift on a video (``send_to_video``) takes the same path with the video's record as its
check, and is delivered into the video's totals instead of a room.

The room check is the point a gift is accepted against, the same for every transport: the
room's record in the engine, read right before the debit (never a process's copy of it,
which learns of the end only at the hub's next read of the room). A gift checked while the
room was live and debited after its end still reaches the creator. The debit itself reads
the creators who banned the sender (``gift_debit.lua``, in the sender's slot): a gift to one
of them is refused ``banned`` with nothing debited, and costs no read of its own.

Delivery runs right after the debit: the gift is published into its room (totals,
leaderboard, combo, the event every viewer sees) and the creator is credited, each at most
once per gift event, at the share the gift was priced with (carried in the outbox entry);
if the room is in a battle the debit's time may fall in, the gift is counted there, once
(``server.battles``); then the outbox entry the debit wrote is cleared. If delivery fails or
the process dies first, the sweeper delivers the outbox entry later.

On the hot path a gift does not wait for its clear: the clears of the gifts delivered in
one event-loop turn are queued together at the next (``store.coalesce``), one ``HDEL`` per
sender on the group commit, sharing the pipeline of the gifts then in flight; so a gift's own
round trips are only its room check, its debit and its delivery (each shared with the other
gifts of its turn, ``store.batch``).
An entry whose clear fails (an outage) or is lost in a crash is delivered again by the
sweeper, which the per-event guards make harmless.

With ``GIFTING_REPLICA_ACKS`` (``store.replication``) a gift is acknowledged only once the
replicas hold its debit, and a turn's entries are cleared only once they hold the
deliveries: the one wait on a gift's own path is its debit's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from server import logs, metrics
from server.domain.catalog import Catalog, Gift
from server.domain.ids import new_id
from server.domain.money import gift_fingerprint, price_gift, utc_day
from server.domain.requests import GiftRequest
from server.errors import Conflict, EngineUnavailable, NotFound
from server.settings import Settings
from server.store import ENGINE_ERRORS, UNAVAILABLE, Store
from server.store.coalesce import Coalescer
from server.store.records import CreatorCredit
from server.store.rooms import Published

log = logging.getLogger(__name__)

_NAME_CACHE_SIZE = 10_000
# In an outage, every turn's clears fail: their warning is logged once per this long.
DEFERRED_LOG_INTERVAL_S = 10.0
# What a gift whose debit met an engine outage answers (503 engine_unavailable).
OUTCOME_UNKNOWN = (
    "the engine did not answer: this gift may or may not have been charged; retry with the "
    "same idempotency_key, which charges it at most once and answers with its outcome"
)


@dataclass(frozen=True)
class GiftOutcome:
    gift_event_id: str
    coins: int
    cost: int
    replayed: bool

    def to_dict(self) -> dict[str, object]:
        return {"gift_event_id": self.gift_event_id, "coins": self.coins, "cost": self.cost}


@dataclass(frozen=True)
class Delivered:
    """A gift delivered, its outbox entry yet to clear: the battle it was counted in, if
    any, is one more slot the replicas must hold first."""

    credit: CreatorCredit
    battle_id: str | None


@dataclass
class GiftService:
    store: Store
    catalog: Catalog
    settings: Settings
    _names: dict[str, str] = field(default_factory=dict)
    _deferred_log: logs.Throttled = field(
        default_factory=lambda: logs.Throttled(log, DEFERRED_LOG_INTERVAL_S)
    )

    def __post_init__(self) -> None:
        self._clears: Coalescer[Delivered] = Coalescer(self._clear)

    async def send(
        self,
        sender_id: str,
        room_id: str,
        request: GiftRequest,
        now_ms: int,
        *,
        sender_name: str | None = None,
    ) -> GiftOutcome:
        """Send one gift."""
        logs.bind(sender=sender_id, room=room_id)
        gift = self.catalog.gift(request.gift_id)
        fingerprint = gift_fingerprint(room_id, gift.id, request.count)
        room = await self.store.rooms.get(room_id)
        if not room.live:
            # A retry of a gift accepted before the room ended gets its first answer.
            earlier = await self.store.wallets.replay(sender_id, request.idempotency_key, fingerprint)
            if earlier is not None:
                return GiftOutcome(earlier.event_id, earlier.coins, earlier.cost, replayed=True)
            raise Conflict(f"room {room_id!r} has ended", code="room_ended")
        if room.creator_id == sender_id:
            raise Conflict("creators cannot send gifts to their own room", code="self_gift")
        return await self._debit_and_deliver(
            sender_id,
            room.creator_id,
            gift,
            request,
            fingerprint,
            now_ms,
            sender_name,
            room_id=room_id,
            battle_id=room.battle_id,
        )

    async def send_to_video(
        self,
        sender_id: str,
        video_id: str,
        request: GiftRequest,
        now_ms: int,
        *,
        sender_name: str | None = None,
    ) -> GiftOutcome:
        """Send one gift on a video: checked against the video's record (it exists, it is not
        the sender's own, its creator did not ban the sender), then debited and delivered as
        a gift in a live is."""
        logs.bind(sender=sender_id, video=video_id)
        gift = self.catalog.gift(request.gift_id)
        # Ids hold no ':', so a video's fingerprint never equals a room's.
        fingerprint = gift_fingerprint(f"video:{video_id}", gift.id, request.count)
        creator_id = await self.store.videos.creator_of(video_id)
        if creator_id is None:
            raise NotFound(f"no video {video_id!r}")
        if creator_id == sender_id:
            raise Conflict("creators cannot send gifts to their own video", code="self_gift")
        return await self._debit_and_deliver(
            sender_id, creator_id, gift, request, fingerprint, now_ms, sender_name, video_id=video_id
        )

    async def _debit_and_deliver(
        self,
        sender_id: str,
        creator_id: str,
        gift: Gift,
        request: GiftRequest,
        fingerprint: str,
        now_ms: int,
        sender_name: str | None,
        *,
        room_id: str = "",
        video_id: str = "",
        battle_id: str | None = None,
    ) -> GiftOutcome:
        """Price, debit and deliver a gift to a room or (``video_id``) a video, once checked;
        ``battle_id`` is the battle the room ran when it was checked (see ``deliver``)."""
        price = price_gift(gift, request.count, self.settings.creator_share)
        credit = CreatorCredit(
            event_id=new_id("g"),
            creator_id=creator_id,
            room_id=room_id,
            sender_id=sender_id,
            gift_id=gift.id,
            count=request.count,
            coins=price.coins,
            diamonds=price.diamonds,
            ts=now_ms,
            sender_name=sender_name or await self.name_of(sender_id),
            share=price.share,
            video_id=video_id,
        )
        try:
            with metrics.GIFT_DEBIT_SECONDS.time():
                debit = await self.store.wallets.debit_gift(
                    credit=credit,
                    idempotency_key=request.idempotency_key,
                    fingerprint=fingerprint,
                    day=utc_day(now_ms),
                    idempotency_ttl_s=self.settings.idempotency_ttl_s,
                    rate_per_s=self.settings.gift_rate_per_s,
                    burst=self.settings.gift_burst,
                    clawback_window_ms=self.settings.clawback_window_ms,
                )
        except UNAVAILABLE as exc:
            # The debit may have run with its reply lost: only a retry with the key can tell.
            metrics.engine_error(exc)
            log.warning("gift debit outcome unknown: engine unavailable (%r)", exc)
            raise EngineUnavailable(OUTCOME_UNKNOWN) from exc
        logs.bind(gift_event_id=debit.event_id)
        # Acknowledged only once the replicas hold it (a replay too: it may answer for a debit
        # the replicas do not have yet). Unconfirmed, the delivery waits for the sweeper.
        await self.store.replicated(users=[sender_id])
        if not debit.replayed:
            metrics.COINS_SPENT.inc(debit.cost)
            try:
                credit = dataclasses.replace(credit, debit_ms=debit.debit_ms)
                await self.deliver(credit, balance=debit.coins, clear_now=False, battle_id=battle_id)
            except Exception as exc:
                metrics.engine_error(exc)
                # The debit stands and the outbox holds the credit; the sweeper finishes it.
                log.exception("delivery of gift %s deferred to the outbox", credit.event_id)
        return GiftOutcome(debit.event_id, debit.coins, debit.cost, debit.replayed)

    async def deliver(
        self,
        credit: CreatorCredit,
        balance: int | None = None,
        clear_now: bool = True,
        battle_id: str | None = None,
    ) -> bool:
        """Publish the gift into its room (or its video) and credit the creator, count it in
        the room's battle if its debit fell in one, then clear the outbox entry.

        The battle its debit fell in is the room's answer to the publish. ``battle_id``, the
        battle the room ran when the gift was checked, is almost always that one: the gift is
        counted there in the same round trip, ahead of the publish, so the room's viewers
        never see a gift before its battle's score holds it (the hub reads both each tick).
        ``battle_score.lua`` counts a gift only if its debit fell in the battle's window, so
        a battle that ended meanwhile counts nothing, and the battle the publish names, if
        another, is counted after it as before.

        Every step is guarded per gift event, so delivering twice changes nothing the second
        time. Returns True if the creator was credited by this call.
        """
        gift = self.catalog.gifts.get(credit.gift_id)
        # All are queued now and go to the engine in the same round trip (store.batch), in
        # this order.
        sender_name = credit.sender_name or credit.sender_id
        counted = None
        if battle_id is not None and credit.debit_ms is not None and not credit.video_id:
            counted = self.store.battles.score(battle_id, credit)
        published: asyncio.Future[Any]
        if credit.video_id:
            published = self.store.videos.publish_gift(credit, sender_name=sender_name)
        else:
            published = self.store.rooms.publish_gift(
                credit,
                sender_name=sender_name,
                streakable=gift is not None and gift.streakable,
                balance=balance,
                combo_window_ms=self.settings.combo_window_ms,
            )
        credit_applied = self.store.earnings.credit(
            credit,
            credit.ts + int(self.settings.diamond_hold_s * 1000),
            # The share its diamonds were priced with; entries that predate it record none.
            self.settings.creator_share if credit.share is None else credit.share,
        )
        try:
            outcome = await published
        finally:
            # Awaited whatever the room's outcome, so no error goes unobserved.
            try:
                credited = await credit_applied
            finally:
                if counted is not None:
                    await counted
        # A gift in a live counts in the room's battle its debit fell in, if there is one.
        battle = None
        if isinstance(outcome, Published) and credit.debit_ms is not None:
            battle = outcome.battle_id
        if battle is not None and battle != battle_id:
            await self.store.battles.score(battle, credit)
        if credited:
            metrics.DIAMONDS_CREDITED.inc(credit.diamonds)
        delivered = Delivered(credit, battle)
        if clear_now:
            # The outbox entry is the only record left to deliver from once it is cleared.
            await self._clear([delivered], raise_errors=True)
        else:
            self._clears.add(delivered)
        return credited

    async def flush_clears(self) -> None:
        """Send the clears queued so far now, and wait for every clear in flight."""
        await self._clears.drain()

    async def _clear(self, delivered: list[Delivered], raise_errors: bool = False) -> None:
        """Clear the outbox entries of deliveries (one turn's, or the sweeper's one), once the
        replicas hold them (one fence per master for all of them); on an outage, leave them
        to the sweeper."""
        try:
            await self.store.replicated(
                users={d.credit.creator_id for d in delivered},
                **_targets([d.credit for d in delivered]),
                keys={self.store.keys.battle(d.battle_id).info for d in delivered if d.battle_id},
            )
            await self.store.outbox.clear_many([(d.credit.sender_id, d.credit.event_id) for d in delivered])
        except ENGINE_ERRORS as exc:
            if raise_errors:
                raise
            metrics.engine_error(exc)
            self._deferred_log.warning("outbox clears deferred: engine unavailable (%s)", exc)

    async def sweep(self, older_than_ms: int, *, by_debit: bool = False) -> int:
        """Deliver every outbox entry written before ``older_than_ms`` (priced then, or with
        ``by_debit`` debited then by the engine's clock); return how many credited now."""
        credited = 0
        async for sender_id in self.store.outbox.senders():
            pending = await self.store.outbox.pending(sender_id)
            if pending:
                # Deliver no gift whose debit the replicas might not have.
                await self.store.replicated(users=[sender_id])
            for credit in pending:
                when = credit.debit_ms if by_debit and credit.debit_ms is not None else credit.ts
                if when < older_than_ms and await self.deliver(credit):
                    credited += 1
        return credited

    def name_of(self, user_id: str) -> Awaitable[str]:
        """The user's display name (their id if they have none), cached per process. A name
        not cached is read with the engine call queued at once (``Store.profile_name``), so a
        handshake's read shares the round trip of its connection limits."""
        name = self._names.get(user_id)
        if name is not None:
            return _known(name)
        return self._remember(user_id, self.store.profile_name(user_id))

    async def _remember(self, user_id: str, reading: Awaitable[str | None]) -> str:
        name = await reading or user_id
        if len(self._names) >= _NAME_CACHE_SIZE:
            self._names.clear()
        self._names[user_id] = name
        return name


async def _known(name: str) -> str:
    return name


def _targets(delivered: list[CreatorCredit]) -> dict[str, set[str]]:
    """The rooms and the videos these gifts were published into."""
    return {
        "rooms": {credit.room_id for credit in delivered if not credit.video_id},
        "videos": {credit.video_id for credit in delivered if credit.video_id},
    }
