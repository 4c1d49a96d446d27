"""A reply lost on the way back: the engine ran a script, the connection dropped before its
answer arrived, and the engine client sent the same call again on a new connection.

The store's writes must make that second run harmless (``store.client_options``): each
test here puts a real TCP forwarder between the store and a real engine, lets one call of
one script through and closes the connection instead of passing its reply back, then checks
that the caller got the answer it would have had from one run, and the books hold it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.domain.catalog import Catalog
from server.domain.requests import GiftRequest
from server.engine import EmbeddedEngine
from server.errors import Conflict
from server.gifting import GiftService
from server.keys import KeySchema
from server.settings import Settings
from server.store import Store, scripts
from server.store.battles import Side
from server.store.chat import Message
from server.store.payments import PaymentOutcome
from server.store.records import Withdrawal
from server.store.scripts import (
    BATTLE_ANSWER,
    BATTLE_CLAIM,
    CHAT_POST,
    CLAW_BACK,
    CONNECTION_OPEN,
    CREATE_ORDER,
    CREDIT_PURCHASE,
    GIFT_DEBIT,
    RESTORE_PURCHASE,
    WITHDRAW,
    WITHDRAWAL_DECIDE,
    Script,
)
from tests.support import unique

pytestmark = [pytest.mark.anyio, pytest.mark.embedded_only]

PREFIX = "lost:"


class LosingForwarder:
    """Forwards each connection to the engine's unix socket; once ``lose(*markers)`` is armed,
    the next command carrying every marker (a script's hash, a command's name, a key) goes
    through and its connection is closed before the reply comes back."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.armed: tuple[bytes, ...] = ()
        self.lost: list[bytes] = []
        self.url = ""

    def lose(self, *markers: Script | bytes) -> None:
        self.armed = tuple(m.sha.encode() if isinstance(m, Script) else m for m in markers)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LosingForwarder]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}"
        async with server:
            yield self

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        engine_in, engine_out = await asyncio.open_unix_connection(self.socket_path)
        losing = asyncio.Event()

        async def commands() -> None:
            while data := await client_in.read(65_536):
                if self.armed and all(marker in data for marker in self.armed):
                    self.lost.append(self.armed[0])
                    self.armed = ()
                    losing.set()
                engine_out.write(data)
                await engine_out.drain()

        async def replies() -> None:
            while data := await engine_in.read(65_536):
                if losing.is_set():
                    return
                client_out.write(data)
                await client_out.drain()

        tasks = [asyncio.ensure_future(commands()), asyncio.ensure_future(replies())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for writer in (client_out, engine_out):
                writer.close()


@contextlib.asynccontextmanager
async def losing_store(tmp_path: Path) -> AsyncIterator[tuple[Store, LosingForwarder]]:
    engine = EmbeddedEngine(tmp_path / "engine").start()
    assert engine.url.startswith("unix://"), engine.url
    try:
        async with (
            LosingForwarder(engine.url.removeprefix("unix://")).running() as forwarder,
            Store.from_url(forwarder.url, KeySchema(PREFIX)) as store,
        ):
            # Every script loaded first, so that a lost reply is a script's run, not a NOSCRIPT.
            for script in vars(scripts).values():
                if isinstance(script, Script):
                    await store.redis.script_load(script.source)
            yield store, forwarder
    finally:
        engine.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


PACKAGE = Catalog.load_default().package("US", "us_550")


async def order(store: Store, user_id: str, order_id: str) -> dict[str, object]:
    return await store.payments.create_order(user_id, order_id, PACKAGE, now_ms(), ttl_s=60, max_pending=20)


async def pay(store: Store, order_id: str, payment_id: str | None = None) -> PaymentOutcome:
    return await store.payments.credit_payment(
        "sandbox", order_id, payment_id or unique("pay"), PACKAGE.amount_minor, PACKAGE.currency, now_ms()
    )


async def test_an_order_whose_reply_was_lost_is_answered_as_the_one_order(tmp_path: Path) -> None:
    buyer = unique("v")
    async with losing_store(tmp_path) as (store, forwarder):
        await order(store, buyer, unique("ord"))
        forwarder.lose(CREATE_ORDER)
        order_id = unique("ord")
        opened = await order(store, buyer, order_id)
        assert forwarder.lost == [CREATE_ORDER.sha.encode()]
        assert (opened["order_id"], opened["state"]) == (order_id, "pending")
        assert await store.payments.get_order(buyer, order_id) == opened
        keys = KeySchema(PREFIX)
        assert await store.redis.zcard(keys.user(buyer).pending_orders) == 2
        owner_ttl_ms = await store.redis.pttl(keys.order_owner(order_id))
        assert 0 < owner_ttl_ms <= 60_000


async def test_a_payment_whose_reply_was_lost_credits_its_coins_once(tmp_path: Path) -> None:
    buyer = unique("v")
    async with losing_store(tmp_path) as (store, forwarder):
        first, second = unique("ord"), unique("ord")
        for order_id in (first, second):
            await order(store, buyer, order_id)
        await pay(store, first)
        forwarder.lose(CREDIT_PURCHASE)
        paid_with = unique("pay")
        paid = await pay(store, second, paid_with)
        assert forwarder.lost == [CREDIT_PURCHASE.sha.encode()]
        # Credited by this call, as its first answer said: not a redelivery's "credited: false".
        assert (paid.order_id, paid.user_id, paid.credited, paid.balance, paid.coins) == (
            second,
            buyer,
            True,
            1_100,
            550,
        )
        assert (await store.wallets.get(buyer, 0)).coins == 1_100
        # A redelivery of the same payment later is one.
        again = await store.payments.credit_payment(
            "sandbox", second, paid_with, PACKAGE.amount_minor, PACKAGE.currency, now_ms() + 1
        )
        assert (again.credited, again.balance) == (False, None)
        ledger = await store.redis.xrange(KeySchema(PREFIX).user(buyer).ledger)
        assert sorted(entry["ref"] for _, entry in ledger) == sorted([first, second])


async def test_a_gift_whose_debit_reply_was_lost_is_charged_once(tmp_path: Path) -> None:
    viewer, creator, room_id = unique("v"), unique("c"), unique("r")
    async with losing_store(tmp_path) as (store, forwarder):
        service = GiftService(store, Catalog.load_default(), Settings())
        order_id = unique("ord")
        await order(store, viewer, order_id)
        await pay(store, order_id)
        await store.rooms.create(creator, room_id, "", now_ms())
        rose = GiftRequest(gift_id="rose", count=1, idempotency_key=unique("k"))
        assert (await service.send(viewer, room_id, rose, now_ms())).coins == 549
        forwarder.lose(GIFT_DEBIT)
        doughnut = GiftRequest(gift_id="doughnut", count=1, idempotency_key=unique("k"))
        sent = await service.send(viewer, room_id, doughnut, now_ms())
        assert forwarder.lost == [GIFT_DEBIT.sha.encode()]
        # Answered as the first answer, not a replay, and delivered at once, not left to the
        # sweeper: the room and the creator have it, and the outbox is empty.
        assert (sent.cost, sent.coins, sent.replayed) == (30, 519, False)
        await service.flush_clears()
        keys = KeySchema(PREFIX)
        assert await store.redis.hlen(keys.user(viewer).outbox) == 0
        state = await store.rooms.state(room_id)
        assert state is not None and state.coins == 31
        assert (await store.wallets.get(viewer, 0)).coins == 519
        ledger = await store.redis.xrange(KeySchema(PREFIX).user(viewer).ledger)
        assert [entry["kind"] for _, entry in ledger] == ["purchase", "gift", "gift"]


async def test_a_withdrawal_and_its_decision_whose_replies_were_lost_stand_once(tmp_path: Path) -> None:
    creator = unique("c")
    keys = KeySchema(PREFIX)
    async with losing_store(tmp_path) as (store, forwarder):
        await store.redis.hset(keys.user(creator).earnings, mapping={"available": 5_000})
        withdrawals = store.withdrawals

        async def withdraw(withdrawal_id: str, diamonds: int) -> tuple[Withdrawal, bool]:
            return await withdrawals.request(
                creator,
                withdrawal_id,
                diamonds=diamonds,
                amount_minor=diamonds // 2,
                idempotency_key=unique("k"),
                minimum=100,
                daily_cap_minor=1_000_000,
                day=0,
                now_ms=now_ms(),
            )

        await withdraw(unique("wd"), 1_000)
        forwarder.lose(WITHDRAW)
        withdrawal_id = unique("wd")
        withdrawal, replayed = await withdraw(withdrawal_id, 2_000)
        assert forwarder.lost == [WITHDRAW.sha.encode()]
        assert (withdrawal.withdrawal_id, withdrawal.state, replayed) == (withdrawal_id, "requested", False)
        # Reachable by an admin: its owner pointer and its place in the listing stand.
        assert await withdrawals.owner(withdrawal_id) == creator
        assert withdrawal_id in [w.withdrawal_id for w in await withdrawals.list(creator, "requested", 10)]
        forwarder.lose(WITHDRAWAL_DECIDE)
        decided = await withdrawals.decide(withdrawal_id, "paid", unique("admin"), "", now_ms())
        assert forwarder.lost[-1] == WITHDRAWAL_DECIDE.sha.encode()
        assert decided.state == "paid"
        earnings = await store.redis.hgetall(keys.user(creator).earnings)
        held = (earnings["available"], earnings["reserved"], earnings["withdrawn"])
        assert held == ("2000", "1000", "2000")


async def test_a_battle_claimed_and_accepted_with_lost_replies_runs(tmp_path: Path) -> None:
    inviter, opponent, battle_id = unique("c"), unique("c"), unique("b")
    async with losing_store(tmp_path) as (store, forwarder):
        battles = store.battles
        forwarder.lose(BATTLE_CLAIM)
        assert await battles.claim(inviter, battle_id, 60_000) is None
        assert forwarder.lost == [BATTLE_CLAIM.sha.encode()]
        assert await battles.current(inviter) == battle_id
        sides = [Side(creator, creator, unique("r"), 0) for creator in (inviter, opponent)]
        invited_ms = await store.engine_ms()
        await battles.open(battle_id, *sides, duration_ms=60_000, invited_ms=invited_ms)
        await battles.open(unique("b"), *sides, duration_ms=60_000, invited_ms=invited_ms)
        forwarder.lose(BATTLE_ANSWER)
        await battles.answer(battle_id, opponent, accept=True, lapse_ms=60_000)
        assert forwarder.lost[-1] == BATTLE_ANSWER.sha.encode()
        battle = await battles.get(battle_id)
        assert battle.state == "running" and battle.ends_at is not None
        # A second accept is still refused: only its own call, sent again, is answered so.
        with pytest.raises(Conflict):
            await battles.answer(battle_id, opponent, accept=True, lapse_ms=60_000)


async def test_a_connection_slot_whose_reply_was_lost_is_the_users_one_slot(tmp_path: Path) -> None:
    viewer = unique("v")
    async with losing_store(tmp_path) as (store, forwarder):
        await store.limits.open_connection(unique("v"), unique("slot"), 1, 60_000)
        forwarder.lose(CONNECTION_OPEN)
        slot = unique("slot")
        assert await store.limits.open_connection(viewer, slot, 1, 60_000) == 1
        assert forwarder.lost == [CONNECTION_OPEN.sha.encode()]
        assert await store.redis.zrange(KeySchema(PREFIX).user(viewer).connections, 0, -1) == [slot]


async def test_an_overlay_token_made_or_regenerated_with_a_lost_reply_is_the_one_that_works(
    tmp_path: Path,
) -> None:
    creator = unique("c")
    async with losing_store(tmp_path) as (store, forwarder):
        overlays = store.overlays
        forwarder.lose(b"\r\nNX\r\n")
        made = await overlays.current(creator)
        assert forwarder.lost == [b"\r\nNX\r\n"]
        assert await overlays.creator_of(made) == creator
        assert await overlays.current(creator) == made
        forwarder.lose(b"GETSET")
        regenerated = await overlays.regenerate(creator, None)
        assert forwarder.lost[-1] == b"GETSET"
        assert (await overlays.creator_of(regenerated), await overlays.creator_of(made)) == (creator, None)
        assert await overlays.current(creator) == regenerated


async def test_a_chat_message_posted_with_a_lost_reply_is_new_not_replayed(tmp_path: Path) -> None:
    creator, room_id, viewer = unique("c"), unique("r"), unique("v")
    async with losing_store(tmp_path) as (store, forwarder):
        await store.rooms.create(creator, room_id, "", now_ms())
        message = Message(
            event_id=unique("c"),
            sender_id=viewer,
            sender_name="Ann",
            text="hello",
            badges=[],
            client_id=unique("m"),
            fingerprint="hello",
            record_ttl_s=60,
            slow_mode_ms=0,
        )
        forwarder.lose(CHAT_POST)
        posted = await store.chat.post(room_id, message)
        assert forwarder.lost == [CHAT_POST.sha.encode()]
        assert (posted.event_id, posted.replayed) == (message.event_id, False)
        # Sent again by its client, it is a replay.
        again = await store.chat.post(room_id, dataclasses.replace(message, event_id=unique("c")))
        assert (again.event_id, again.replayed) == (message.event_id, True)


async def test_a_battle_end_whose_settling_lock_reply_was_lost_is_settled_by_its_taker(
    tmp_path: Path,
) -> None:
    battle_id = unique("b")
    async with losing_store(tmp_path) as (store, forwarder):
        forwarder.lose(b":settling")
        assert await store.battles.settle(battle_id, 30_000) is True
        assert forwarder.lost == [b":settling"]
        # Held: another taker is refused.
        assert await store.battles.settle(battle_id, 30_000) is False


async def test_a_payment_refused_for_its_provider_frees_its_claim_though_the_claims_reply_was_lost(
    tmp_path: Path,
) -> None:
    buyer, order_id, payment_id = unique("v"), unique("ord"), unique("pay")
    async with losing_store(tmp_path) as (store, forwarder):
        await store.payments.create_order(
            buyer, order_id, PACKAGE, now_ms(), ttl_s=60, max_pending=20, provider="stripe"
        )
        claim = KeySchema(PREFIX).payment_claim(payment_id)
        forwarder.lose(claim.encode(), b"\r\nNX\r\n")
        with pytest.raises(Conflict) as refused:
            await pay(store, order_id, payment_id)
        assert refused.value.code == "provider_mismatch"
        assert forwarder.lost == [claim.encode()]
        assert await store.redis.exists(claim) == 0


async def test_a_clawback_and_its_restore_whose_replies_were_lost_are_applied_once_and_say_so(
    tmp_path: Path,
) -> None:
    buyer, order_id, payment_id = unique("v"), unique("ord"), unique("pay")
    async with losing_store(tmp_path) as (store, forwarder):
        await order(store, buyer, order_id)
        await pay(store, order_id, payment_id)
        forwarder.lose(CLAW_BACK)
        clawed = await store.payments.claw_back(order_id, payment_id, "refunded", now_ms(), 60_000)
        assert forwarder.lost == [CLAW_BACK.sha.encode()]
        # Applied by this call, as its first answer said: not a redelivery's "applied: false".
        assert (clawed.applied, clawed.balance, clawed.coins_spent, clawed.gifts_queued) == (True, 0, 0, 0)
        forwarder.lose(RESTORE_PURCHASE)
        restored = await store.payments.restore(order_id, payment_id, now_ms())
        assert forwarder.lost[-1] == RESTORE_PURCHASE.sha.encode()
        assert (restored.restored, restored.balance, restored.coins) == (True, 550, 550)
        assert (await store.wallets.get(buyer, 0)).coins == 550
        # A redelivery of each later is one.
        again = await store.payments.restore(order_id, payment_id, now_ms())
        assert (again.restored, again.balance) == (False, None)
        ledger = await store.redis.xrange(KeySchema(PREFIX).user(buyer).ledger)
        assert [(entry["kind"], int(entry["delta"])) for _, entry in ledger] == [
            ("purchase", 550),
            ("clawback", -550),
            ("restore", 550),
        ]
        clawed_again = await store.payments.claw_back(order_id, payment_id, "refunded", now_ms(), 60_000)
        assert clawed_again.applied is True  # a second refund after the restore is a new one
        assert (await store.wallets.get(buyer, 0)).coins == 0
        redelivered = await store.payments.claw_back(order_id, payment_id, "refunded", now_ms(), 60_000)
        assert (redelivered.applied, redelivered.balance) == (False, None)
