"""A storm of purchases and gifts against real servers, and a read of the books it left.

``Storm`` drives many users at once over HTTP: each buys coins now and then through the
real purchase and sandbox payment flow and otherwise sends gifts, each with a fresh
idempotency key. It records what the servers acknowledged and what failed (a 503 while the
engine is down, a connection cut by a killed server). ``Storm.settle`` then retries every
failed request the way a client would (the same key, the same order), so that every
request the storm meant to make is applied; ``Books`` reads what the engine holds, so a
test can check that each of them was applied exactly once.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import anyio
import httpx

from server.keys import KeySchema
from tests.support import ROOT, engine_client, unique

# (gift id, coins): cheap gifts, so the funding lasts the whole storm.
GIFTS = (("rose", 1), ("doughnut", 30))
PACKAGE = ("us_100", 100)
FUNDING = ("us_1250", 1250)
# Every this many operations a user buys a package instead of gifting.
PURCHASE_EVERY = 6
# After a refused request a user waits this long before the next one, so an outage is not a busy loop.
BACKOFF_S = 0.02


@dataclass(frozen=True)
class Gift:
    user_id: str
    key: str
    gift_id: str
    cost: int


@dataclass
class Storm:
    """Users gifting into one room through one or more servers (user i uses server i mod n)."""

    urls: list[str]
    room_id: str
    users: list[str]
    tokens: dict[str, str] = field(default_factory=dict)
    funded: Counter[str] = field(default_factory=Counter)
    # key -> gift, and the event id and monotonic time of its acknowledgement
    acked: dict[str, tuple[Gift, str, float]] = field(default_factory=dict)
    failed: dict[str, Gift] = field(default_factory=dict)
    # order id -> (user, coins, monotonic time the payment was acknowledged)
    paid: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    unpaid: dict[str, tuple[str, int]] = field(default_factory=dict)
    funding_orders: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)

    @classmethod
    async def prepare(cls, urls: list[str], room_id: str, users: int) -> Storm:
        """Mint a token for each new user and fund them through the real payment flow."""
        storm = cls(urls, room_id, [unique("storm") for _ in range(users)])
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as http:
            for user in storm.users:
                reply = await http.post("/v1/dev/token", json={"user_id": user, "role": "viewer"})
                storm.tokens[user] = reply.json()["token"]
                order = await storm.buy(http, user, FUNDING)
                assert order in storm.paid, f"funding {user} failed: {storm.refusals}"
                storm.funded[user] += FUNDING[1]
                storm.funding_orders.append(order)
                del storm.paid[order]
        return storm

    def auth(self, user: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.tokens[user]}"}

    async def run(self, until: anyio.Event) -> None:
        """Every user works until ``until`` is set."""
        async with anyio.create_task_group() as tasks:
            for i, user in enumerate(self.users):
                tasks.start_soon(self.user_loop, self.urls[i % len(self.urls)], user, until)

    async def user_loop(self, url: str, user: str, until: anyio.Event) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            for n in itertools.count():
                if until.is_set():
                    return
                if n % PURCHASE_EVERY == PURCHASE_EVERY - 1:
                    ok = await self.buy(http, user, PACKAGE) is not None
                else:
                    gift_id, cost = GIFTS[n % len(GIFTS)]
                    ok = await self.gift(http, Gift(user, unique("k"), gift_id, cost))
                if not ok:
                    await anyio.sleep(BACKOFF_S)

    async def gift(self, http: httpx.AsyncClient, gift: Gift) -> bool:
        body = {"gift_id": gift.gift_id, "count": 1, "idempotency_key": gift.key}
        try:
            reply = await http.post(
                f"/v1/rooms/{self.room_id}/gifts", json=body, headers=self.auth(gift.user_id)
            )
        except httpx.HTTPError as exc:
            self.refusals[type(exc).__name__] += 1
            self.failed[gift.key] = gift
            return False
        if reply.status_code != 200:
            self.refusals[f"gift {reply.status_code} {error_code(reply)}"] += 1
            self.failed[gift.key] = gift
            return False
        self.failed.pop(gift.key, None)
        self.acked[gift.key] = (gift, reply.json()["gift_event_id"], time.monotonic())
        return True

    async def buy(self, http: httpx.AsyncClient, user: str, package: tuple[str, int]) -> str | None:
        """Create an order and pay it; the order id if the payment was acknowledged."""
        try:
            reply = await http.post("/v1/purchases", json={"package_id": package[0]}, headers=self.auth(user))
        except httpx.HTTPError as exc:
            self.refusals[type(exc).__name__] += 1
            return None
        if reply.status_code != 201:
            self.refusals[f"order {reply.status_code} {error_code(reply)}"] += 1
            return None  # no order, nothing to pay: nothing can have been credited
        order_id = reply.json()["order_id"]
        return order_id if await self.pay(http, user, order_id, package[1]) else None

    async def pay(self, http: httpx.AsyncClient, user: str, order_id: str, coins: int) -> bool:
        try:
            reply = await http.post(f"/v1/sandbox/orders/{order_id}/pay", headers=self.auth(user))
        except httpx.HTTPError as exc:
            self.refusals[type(exc).__name__] += 1
            self.unpaid[order_id] = (user, coins)
            return False
        paid_before = reply.status_code == 409 and error_code(reply) == "order_already_paid"
        if reply.status_code != 200 and not paid_before:
            self.refusals[f"pay {reply.status_code} {error_code(reply)}"] += 1
            self.unpaid[order_id] = (user, coins)
            return False
        self.unpaid.pop(order_id, None)
        self.paid[order_id] = (user, coins, time.monotonic())
        return True

    async def settle(self, url: str) -> None:
        """Retry every failed gift (same key) and payment (same order) until each succeeds."""
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            deadline = time.monotonic() + 30
            while self.failed or self.unpaid:
                assert time.monotonic() < deadline, f"retries keep failing: {self.refusals}"
                for gift in list(self.failed.values()):
                    await self.gift(http, gift)
                for order_id, (user, coins) in list(self.unpaid.items()):
                    await self.pay(http, user, order_id, coins)

    def expected_coins(self, user: str) -> int:
        bought = sum(coins for owner, coins, _ in self.paid.values() if owner == user)
        spent = sum(gift.cost for gift, _, _ in self.acked.values() if gift.user_id == user)
        return self.funded[user] + bought - spent


def error_code(reply: httpx.Response) -> str:
    try:
        return str(reply.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


@dataclass(frozen=True)
class Books:
    """What the engine holds for a storm: read-only, straight from its keys."""

    coins: dict[str, int]
    gift_refs: Counter[str]  # gift event id -> coin ledger entries
    purchase_refs: Counter[str]  # order id -> coin ledger entries
    credited_refs: Counter[str]  # gift event id -> creator earnings ledger entries
    published: Counter[str]  # gift event id -> room stream entries
    outbox: int  # outbox entries not yet cleared, over every user

    @classmethod
    def read(cls, url: str, prefix: str, storm: Storm, creator_id: str) -> Books:
        keys = KeySchema(prefix)
        coins: dict[str, int] = {}
        gift_refs: Counter[str] = Counter()
        purchase_refs: Counter[str] = Counter()
        outbox = 0
        with engine_client(url) as client:
            for user in storm.users:
                user_keys = keys.user(user)
                coins[user] = int(client.hget(user_keys.wallet, "coins") or 0)
                for _, entry in client.xrange(user_keys.ledger):
                    if entry["kind"] == "gift":
                        gift_refs[entry["ref"]] += 1
                    elif entry["kind"] == "purchase":
                        purchase_refs[entry["ref"]] += 1
                outbox += client.hlen(user_keys.outbox)
            # The creator and the room may have had other storms' gifts: count this storm's users'.
            senders = set(storm.users)
            credited = Counter(
                entry["ref"]
                for _, entry in client.xrange(keys.user(creator_id).earnings_ledger)
                if entry["kind"] == "gift" and entry["sender"] in senders
            )
            published = Counter(
                entry["e"]
                for _, entry in client.xrange(keys.room(storm.room_id).events)
                if entry["t"] == "gift" and entry["s"] in senders
            )
        return cls(coins, gift_refs, purchase_refs, credited, published, outbox)


async def wait_for_empty_outbox(url: str, prefix: str, storm: Storm, creator_id: str) -> Books:
    """The books once every outbox entry has been delivered and cleared by a server's sweeper."""
    deadline = time.monotonic() + 20
    while True:
        books = Books.read(url, prefix, storm, creator_id)
        if books.outbox == 0:
            return books
        assert time.monotonic() < deadline, f"{books.outbox} outbox entries were never delivered"
        await anyio.sleep(0.1)


def audit(url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    """``gifting-server audit`` on the engine at ``url`` under ``prefix``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIFTING_")}
    env.update(GIFTING_REDIS_URL=url, GIFTING_KEY_PREFIX=prefix)
    return subprocess.run(
        [sys.executable, "-m", "server", "audit"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
