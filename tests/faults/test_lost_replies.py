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
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.domain.catalog import Catalog
from server.domain.requests import GiftRequest
from server.engine import EmbeddedEngine
from server.gifting import GiftService
from server.keys import KeySchema
from server.settings import Settings
from server.store import Store
from server.store.payments import PaymentOutcome
from server.store.scripts import CREATE_ORDER, CREDIT_PURCHASE, GIFT_DEBIT, Script
from tests.support import unique

pytestmark = [pytest.mark.anyio, pytest.mark.embedded_only]

PREFIX = "lost:"


class LosingForwarder:
    """Forwards each connection to the engine's unix socket; once ``lose(script)`` is armed,
    the next command carrying that script's hash goes through and its connection is closed
    before the reply comes back."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.armed: bytes | None = None
        self.lost: list[str] = []
        self.url = ""

    def lose(self, script: Script) -> None:
        self.armed = script.sha.encode()

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
                if self.armed is not None and self.armed in data:
                    self.lost.append(self.armed.decode())
                    self.armed = None
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
            yield store, forwarder
    finally:
        engine.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


PACKAGE = Catalog.load_default().package("US", "us_550")


async def order(store: Store, user_id: str, order_id: str) -> dict[str, object]:
    return await store.payments.create_order(user_id, order_id, PACKAGE, now_ms(), ttl_s=60, max_pending=20)


async def pay(store: Store, order_id: str) -> PaymentOutcome:
    return await store.payments.credit_payment(
        "sandbox", order_id, unique("pay"), PACKAGE.amount_minor, PACKAGE.currency, now_ms()
    )


async def test_an_order_whose_reply_was_lost_is_answered_as_the_one_order(tmp_path: Path) -> None:
    buyer = unique("v")
    async with losing_store(tmp_path) as (store, forwarder):
        # A first order loads the script, so the lost call is the script's run, not its load.
        await order(store, buyer, unique("ord"))
        forwarder.lose(CREATE_ORDER)
        order_id = unique("ord")
        opened = await order(store, buyer, order_id)
        assert forwarder.lost == [CREATE_ORDER.sha]
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
        paid = await pay(store, second)
        assert forwarder.lost == [CREDIT_PURCHASE.sha]
        # The engine cannot tell the second run from the provider's redelivery: it answers as
        # to one, and the coins stand once.
        assert (paid.order_id, paid.user_id) == (second, buyer)
        assert (await store.wallets.get(buyer, 0)).coins == 1_100
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
        assert forwarder.lost == [GIFT_DEBIT.sha]
        assert (sent.cost, sent.coins) == (30, 519)
        await service.flush_clears()
        assert (await store.wallets.get(viewer, 0)).coins == 519
        ledger = await store.redis.xrange(KeySchema(PREFIX).user(viewer).ledger)
        assert [entry["kind"] for _, entry in ledger] == ["purchase", "gift", "gift"]
