"""Which gifts a refund or chargeback takes back, against a real engine and server.

The rule is in docs/MONEY.md: a clawback takes the buyer's newest gifts that no earlier
clawback took, whole, until their cost covers the coins of the purchase already spent. The
tests drive a server of their own, with a gift rate high enough for ten thousand gifts and
the shipped seven-day hold (nothing leaves the hold while they run), and end with the audit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from server.audit import AuditResult, audit_books
from server.keys import KeySchema
from tests.conftest import Engine
from tests.support import Api, delete_prefix, engine_client_async, running_server, server_env, unique, webhook

SHARE = Fraction(1, 2)
PRICES = {"rose": 1, "finger_heart": 5, "doughnut": 30, "hand_hearts": 100, "corgi": 299, "universe": 34999}


@dataclass
class Books:
    api: Api
    base_url: str
    prefix: str
    url: str

    def audit(self) -> AuditResult:
        async def run() -> AuditResult:
            async with engine_client_async(self.url) as client:
                return await audit_books(client, KeySchema(self.prefix), SHARE)

        return asyncio.run(run())

    def payment_id(self, user_id: str, order: dict[str, Any]) -> str:
        reply = self.api.http.get(f"/v1/purchases/{order['order_id']}", headers=self.api.auth(user_id))
        payment_id: str = reply.json()["payment_id"]
        return payment_id

    def dispute(self, user_id: str, order: dict[str, Any]) -> None:
        reply = webhook(self.api, order, self.payment_id(user_id, order), event_type="payment.disputed")
        assert reply.status_code == 200 and reply.json()["clawed_back"] is True, reply.text


@contextmanager
def books_of_their_own(engine: Engine, logs: Path) -> Iterator[Books]:
    prefix = f"{unique('claw')}:"
    env = server_env(engine.url, prefix, GIFTING_GIFT_RATE="1000000", GIFTING_GIFT_BURST="1000000")
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
            yield Books(Api(http), server.base_url, prefix, engine.url)
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@pytest.fixture(scope="module")
def books(engine: Engine, logs: Path) -> Iterator[Books]:
    with books_of_their_own(engine, logs) as books:
        yield books


@pytest.fixture(scope="module")
def small_books(engine: Engine, logs: Path) -> Iterator[Books]:
    """Books without the ten thousand roses, so that auditing them after each example is quick."""
    with books_of_their_own(engine, logs) as books:
        yield books


def roses(books: Books, user_id: str, room_id: str, n: int, parallel: int = 16) -> None:
    """``n`` gifts of one rose each, one request each (one ledger entry each), ``parallel`` at once."""
    headers = books.api.auth(user_id)

    async def run() -> None:
        todo = iter(range(n))
        async with httpx.AsyncClient(base_url=books.base_url, timeout=30) as http:

            async def worker() -> None:
                for _ in todo:
                    body = {"gift_id": "rose", "count": 1, "idempotency_key": unique("k")}
                    reply = await http.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=headers)
                    assert reply.status_code == 200, reply.text

            await asyncio.gather(*(worker() for _ in range(parallel)))

    asyncio.run(run())


def test_a_big_gift_behind_ten_thousand_roses_is_still_clawed_back(books: Books) -> None:
    """The shielding attack: a Universe, then more one-coin roses than a ledger window holds,
    then every purchase disputed. The Universe's diamonds come back in full."""
    api = books.api
    accomplice = unique("c")
    room_id = api.open_room(accomplice)
    fraud = unique("v")
    orders = [api.buy(fraud, "us_5450") for _ in range(10)]  # 54,500 coins
    assert api.gift(fraud, room_id, "universe").status_code == 200  # 34,999 coins -> 17,499 diamonds
    roses(books, fraud, room_id, 10_050)
    assert api.coins(fraud) == 54_500 - 34_999 - 10_050
    assert api.earnings(accomplice)["pending"] == 17_499  # a rose earns nothing
    for order in orders:
        books.dispute(fraud, order)
    assert api.coins(fraud) == -(34_999 + 10_050)
    earnings = api.earnings(accomplice)
    assert (earnings["pending"], earnings["reversed"], earnings["lifetime"]) == (0, 17_499, 17_499)
    result = books.audit()
    assert result.ok, result.report()
    assert result.totals["diamonds_reversed"] >= 17_499


PACKAGES = {"us_100": 100, "us_550": 550}
operation = st.one_of(
    st.tuples(st.just("buy"), st.sampled_from(sorted(PACKAGES))),
    st.tuples(st.just("gift"), st.sampled_from(sorted(PRICES)), st.integers(1, 3), st.integers(0, 1)),
    st.tuples(st.just("dispute"), st.integers(0, 7)),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=14))
# The spent coins are exactly those of the newest gift: the older one stays with its creator.
@example(
    [
        ("buy", "us_550"),
        ("buy", "us_100"),
        ("gift", "hand_hearts", 1, 0),
        ("gift", "doughnut", 1, 1),
        ("dispute", 0),
    ]
)
def test_the_diamonds_clawed_back_are_those_of_the_documented_rule(
    small_books: Books, operations: list[tuple[Any, ...]]
) -> None:
    """Purchases, gifts of random sizes to two creators and disputes of random purchases, in
    any order: each creator loses exactly the diamonds of the gifts the rule of docs/MONEY.md
    takes (newest first, not taken before, whole, up to the coins spent)."""
    books = small_books
    api = books.api
    buyer = unique("v")
    creators = [unique("c"), unique("c")]
    rooms = [api.open_room(creator) for creator in creators]
    balance = 0
    clawable: list[tuple[int, int]] = []  # (cost, creator index), oldest first
    orders: list[tuple[dict[str, Any], int]] = []
    credited, reversed_ = [0, 0], [0, 0]
    for op in operations:
        if op[0] == "buy":
            orders.append((api.buy(buyer, op[1]), PACKAGES[op[1]]))
            balance += PACKAGES[op[1]]
        elif op[0] == "gift":
            _, gift_id, count, to = op
            cost = PRICES[gift_id] * count
            reply = api.gift(buyer, rooms[to], gift_id, count)
            if balance < cost:  # a negative balance refuses any gift
                assert reply.status_code == 402, reply.text
                continue
            assert reply.status_code == 200, reply.text
            balance -= cost
            clawable.append((cost, to))
            credited[to] += cost // 2
        elif orders:
            order, coins = orders.pop(op[1] % len(orders))
            books.dispute(buyer, order)
            spent = coins - min(coins, max(balance, 0))
            balance -= coins
            covered = 0
            while clawable and covered < spent:
                cost, to = clawable.pop()
                covered += cost
                reversed_[to] += cost // 2
    assert api.coins(buyer) == balance
    for n, creator in enumerate(creators):
        earnings = api.earnings(creator)
        assert (earnings["lifetime"], earnings["reversed"]) == (credited[n], reversed_[n])
        assert earnings["pending"] == credited[n] - reversed_[n]
    result = books.audit()
    assert result.ok, result.report()
