"""Creator money against a real engine: the hold, withdrawals, clawbacks, freezing, catalog edits.

A dedicated pair of server processes with a short hold (1 s), a low withdrawal minimum and a
low daily payout cap, under a key prefix of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.conftest import Engine
from tests.support import Api, ServerProcess, delete_prefix, running_server, server_env, unique, webhook

HOLD_S = 1.0
MIN_WITHDRAWAL = 100
DAILY_CAP_MINOR = 100  # $1.00 = 200 diamonds at half a cent


@dataclass
class Money:
    api: Api
    other: Api
    servers: tuple[ServerProcess, ServerProcess]


@pytest.fixture(scope="module")
def money(engine: Engine, logs: Path) -> Iterator[Money]:
    prefix = f"{unique('m')}:"
    env = server_env(
        engine.url,
        prefix,
        GIFTING_DIAMOND_HOLD_S=str(HOLD_S),
        GIFTING_MIN_WITHDRAWAL_DIAMONDS=str(MIN_WITHDRAWAL),
        GIFTING_DAILY_PAYOUT_CAP_MINOR=str(DAILY_CAP_MINOR),
        GIFTING_GIFT_RATE="1000",
        GIFTING_GIFT_BURST="1000",
    )
    try:
        with (
            running_server(env, logs) as a,
            running_server(env, logs) as b,
            httpx.Client(base_url=a.base_url, timeout=10) as http_a,
            httpx.Client(base_url=b.base_url, timeout=10) as http_b,
        ):
            yield Money(Api(http_a), Api(http_b), (a, b))
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


def live_creator(api: Api) -> tuple[str, str]:
    creator = unique("c")
    return creator, api.open_room(creator)


def wait_until(check: Any, what: str, limit_s: float = 10) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def withdraw(api: Api, creator: str, diamonds: int, key: str | None = None) -> httpx.Response:
    body = {"diamonds": diamonds, "idempotency_key": key or unique("w")}
    return api.http.post("/v1/creator/withdrawals", json=body, headers=api.auth(creator, "creator"))


def decide(api: Api, withdrawal_id: str, action: str, role: str = "admin") -> httpx.Response:
    return api.http.post(
        f"/v1/admin/withdrawals/{withdrawal_id}/{action}", json={"note": "t"}, headers=api.auth("boss", role)
    )


def earned(api: Api, creator: str, diamonds: int) -> None:
    """Give ``creator`` exactly ``diamonds`` available, through real purchases and gifts."""
    fan = unique("v")
    api.buy(fan, "us_1250")
    room_id = api.open_room(creator)
    assert diamonds % 5 == 0 and diamonds * 2 <= 1250
    assert api.gift(fan, room_id, "finger_heart", diamonds * 2 // 5).status_code == 200
    wait_until(lambda: api.earnings(creator)["available"] >= diamonds, "the hold never released")


def test_diamonds_stay_pending_for_the_hold_then_become_available(money: Money) -> None:
    api = money.api
    creator, room_id = live_creator(api)
    fan = unique("v")
    api.buy(fan)
    assert api.gift(fan, room_id, "doughnut", 2).status_code == 200  # 60 coins -> 30 diamonds
    first = api.earnings(creator)
    assert (first["pending"], first["available"], first["lifetime"]) == (30, 0, 30)
    assert first["pending_value_minor"] == 15 and first["diamond_value_minor"] == 0
    assert first["currency"] == "USD" and first["diamond_value_millicents"] == 500
    wait_until(lambda: api.earnings(creator)["available"] == 30, "the hold never released")
    after = api.earnings(creator)
    assert (after["pending"], after["available"], after["diamond_value_minor"]) == (0, 30, 15)
    kinds = [(e["kind"], e.get("pending"), e.get("available")) for e in api.earnings_ledger(creator)]
    assert kinds == [("release", -30, 30), ("gift", 30, None)]
    assert after["lives"] == [{"room_id": room_id, "diamonds": 30}]


def test_withdrawal_boundaries(money: Money) -> None:
    api = money.api
    creator = unique("c")
    earned(api, creator, 300)
    assert withdraw(api, creator, MIN_WITHDRAWAL - 1).json()["error"]["code"] == "below_minimum_withdrawal"
    assert withdraw(api, creator, 301).json()["error"]["code"] == "insufficient_diamonds"
    first = withdraw(api, creator, 150, key="wd-1")  # 75 cents
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["state"], body["diamonds"], body["amount"]) == (
        "requested",
        150,
        {"amount_minor": 75, "currency": "USD"},
    )
    again = withdraw(api, creator, 150, key="wd-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["withdrawal_id"] == body["withdrawal_id"]
    assert withdraw(api, creator, 140, key="wd-1").json()["error"]["code"] == "idempotency_mismatch"
    capped = withdraw(api, creator, 100)  # 50 more cents: 125 > the 100-cent daily cap
    assert capped.status_code == 409 and capped.json()["error"]["code"] == "daily_payout_cap"
    earnings = api.earnings(creator)
    assert (earnings["available"], earnings["reserved"]) == (150, 150)
    body = {"diamonds": 100, "idempotency_key": unique("w")}
    viewer = api.http.post("/v1/creator/withdrawals", json=body, headers=api.auth(unique("v")))
    assert viewer.status_code == 403


def test_an_admin_pays_or_rejects_each_withdrawal_once(money: Money) -> None:
    api = money.api
    creator = unique("c")
    earned(api, creator, 300)
    paid = withdraw(api, creator, 100).json()["withdrawal_id"]
    rejected = withdraw(api, creator, 100).json()["withdrawal_id"]
    assert decide(api, paid, "paid", role="creator").status_code == 403
    listed = api.http.get(
        "/v1/admin/withdrawals",
        params={"state": "requested", "creator_id": creator},
        headers=api.auth("boss", "admin"),
    ).json()["withdrawals"]
    assert {w["withdrawal_id"] for w in listed} == {paid, rejected}
    # The other process takes the decisions: the withdrawal is found through the engine.
    assert decide(money.other, paid, "paid").json()["state"] == "paid"
    assert decide(api, paid, "paid").json()["error"]["code"] == "withdrawal_decided"
    assert decide(api, paid, "reject").json()["error"]["code"] == "withdrawal_decided"
    assert decide(api, rejected, "reject").json()["state"] == "rejected"
    assert decide(api, rejected, "paid").json()["error"]["code"] == "withdrawal_decided"
    earnings = api.earnings(creator)
    assert (earnings["available"], earnings["reserved"], earnings["withdrawn"]) == (200, 0, 100)
    # The rejected request no longer counts against today's cap: 100 more cents fit again.
    assert withdraw(api, creator, 100).status_code == 201
    kinds = [e["kind"] for e in api.earnings_ledger(creator)]
    assert kinds.count("withdrawal_paid") == 1 and kinds.count("withdrawal_rejected") == 1
    log = api.http.get("/v1/admin/log", headers=api.auth("boss", "admin")).json()["entries"]
    assert {(e["action"], e["target"]) for e in log} >= {
        ("withdrawal.paid", paid),
        ("withdrawal.rejected", rejected),
    }


def test_a_chargeback_after_the_coins_were_gifted_reverses_pending_diamonds_and_locks_gifting(
    money: Money,
) -> None:
    api = money.api
    creator, room_id = live_creator(api)
    fraud = unique("v")
    order = api.buy(fraud)
    payment_id = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(fraud)).json()[
        "payment_id"
    ]
    assert api.gift(fraud, room_id, "hand_hearts", 5).status_code == 200  # 500 coins -> 250 diamonds
    assert api.earnings(creator)["pending"] == 250
    reply = webhook(api, order, payment_id, event_type="payment.disputed")
    assert reply.status_code == 200 and reply.json()["clawed_back"] is True
    assert api.coins(fraud) == 50 - 550
    wait_until(lambda: api.earnings(creator)["pending"] == 0, "the pending diamonds were not reversed")
    earnings = api.earnings(creator)
    assert (earnings["reversed"], earnings["available"], earnings["lifetime"]) == (250, 0, 250)
    blocked = api.gift(fraud, room_id, "rose")
    assert blocked.status_code == 402 and blocked.json()["error"]["code"] == "negative_balance"
    # Redelivered, or refunded on top: nothing more is taken.
    assert webhook(api, order, payment_id, event_type="payment.disputed").json()["clawed_back"] is False
    assert webhook(api, order, payment_id, event_type="payment.refunded").json()["clawed_back"] is False
    assert api.coins(fraud) == -500
    state = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(fraud)).json()["state"]
    assert state == "charged_back"
    kinds = [(e["kind"], e["delta"]) for e in api.ledger(fraud)]
    assert kinds[0] == ("clawback", -550)
    api.buy(fraud, "us_1250")  # back above zero: gifting works again
    assert api.coins(fraud) == 750
    assert api.gift(fraud, room_id, "rose").status_code == 200


def test_earnings_state_the_terms_and_each_gift_row_says_what_became_of_it(money: Money) -> None:
    api = money.api
    creator, room_id = live_creator(api)
    assert api.earnings(creator)["terms"] == {
        "share_percent": 50.0,
        "diamond_value_millicents": 500,
        "currency": "USD",
        "min_withdrawal_diamonds": MIN_WITHDRAWAL,
        "min_withdrawal_minor": 50,
        "hold_s": 1,
        "daily_payout_cap_minor": DAILY_CAP_MINOR,
    }
    below = withdraw(api, creator, MIN_WITHDRAWAL - 1)
    assert below.status_code == 422
    assert below.json() == {
        "error": {
            "code": "below_minimum_withdrawal",
            "message": f"{MIN_WITHDRAWAL - 1} diamonds requested; a withdrawal is at least "
            f"{MIN_WITHDRAWAL} diamonds",
            "minimum_diamonds": MIN_WITHDRAWAL,
        }
    }
    fan, fraud = unique("v"), unique("v")
    api.buy(fan)
    order = api.buy(fraud)
    payment_id = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(fraud)).json()[
        "payment_id"
    ]
    kept = api.gift(fan, room_id, "doughnut", 2).json()["gift_event_id"]  # 60 coins -> 30 diamonds
    taken = api.gift(fraud, room_id, "hand_hearts", 5).json()["gift_event_id"]  # 500 -> 250
    assert webhook(api, order, payment_id, event_type="payment.disputed").json()["clawed_back"] is True
    wait_until(lambda: api.earnings(creator)["available"] == 30, "the hold never released")
    gifts = {e["ref"]: e for e in api.earnings_ledger(creator) if e["kind"] == "gift"}
    rows = {
        ref: {k: v for k, v in entry.items() if k not in ("id", "ts", "share")}
        for ref, entry in gifts.items()
    }
    assert rows == {
        kept: {
            "kind": "gift",
            "ref": kept,
            "pending": 30,
            "diamonds": 30,
            "coins": 60,
            "sender": fan,
            "sender_name": api.me(fan)["name"],
            "room_id": room_id,
            "gift_id": "doughnut",
            "gift_name": "Doughnut",
            "count": 2,
            "state": "available",
        },
        taken: {
            "kind": "gift",
            "ref": taken,
            "pending": 250,
            "diamonds": 250,
            "coins": 500,
            "sender": fraud,
            "sender_name": api.me(fraud)["name"],
            "room_id": room_id,
            "gift_id": "hand_hearts",
            "gift_name": "Hand Hearts",
            "count": 5,
            "state": "clawed_back",
        },
    }
    assert all(isinstance(entry["ts"], int) and entry["ts"] > 0 for entry in gifts.values())


def test_a_refund_of_unspent_coins_takes_only_the_coins(money: Money) -> None:
    api = money.api
    creator, room_id = live_creator(api)
    fan = unique("v")
    api.buy(fan)
    kept = api.buy(fan)
    assert api.gift(fan, room_id, "doughnut").status_code == 200  # 30 of 1,100 coins
    payment_id = api.http.get(f"/v1/purchases/{kept['order_id']}", headers=api.auth(fan)).json()["payment_id"]
    assert webhook(api, kept, payment_id, event_type="payment.refunded").json()["clawed_back"] is True
    assert api.coins(fan) == 1100 - 30 - 550
    assert api.earnings(creator)["pending"] + api.earnings(creator)["available"] == 15
    assert api.earnings(creator)["reversed"] == 0


def test_a_chargeback_after_the_hold_leaves_released_diamonds_with_the_creator(money: Money) -> None:
    api = money.api
    creator, room_id = live_creator(api)
    fan = unique("v")
    order = api.buy(fan)
    payment_id = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(fan)).json()[
        "payment_id"
    ]
    assert api.gift(fan, room_id, "doughnut", 10).status_code == 200  # 300 coins -> 150 diamonds
    wait_until(lambda: api.earnings(creator)["available"] == 150, "the hold never released")
    assert webhook(api, order, payment_id, event_type="payment.disputed").json()["clawed_back"] is True
    assert api.coins(fan) == 250 - 550
    earnings = api.earnings(creator)
    assert (earnings["available"], earnings["reversed"]) == (150, 0)


def test_a_frozen_user_can_neither_gift_nor_withdraw(money: Money) -> None:
    api = money.api
    creator = unique("c")
    earned(api, creator, 200)
    _, room_id = live_creator(api)
    fan = unique("v")
    api.buy(fan)
    for user in (fan, creator):
        reply = api.http.put(
            f"/v1/admin/users/{user}/frozen", json={"frozen": True}, headers=api.auth("boss", "admin")
        )
        assert reply.json() == {"user_id": user, "frozen": True}
    assert api.gift(fan, room_id, "rose").json()["error"]["code"] == "account_frozen"
    assert withdraw(api, creator, 100).json()["error"]["code"] == "account_frozen"
    assert api.coins(fan) == 550 and api.earnings(creator)["available"] == 200
    not_admin = api.http.put(f"/v1/admin/users/{fan}/frozen", json={"frozen": False}, headers=api.auth(fan))
    assert not_admin.status_code == 403
    for user in (fan, creator):
        api.http.put(
            f"/v1/admin/users/{user}/frozen", json={"frozen": False}, headers=api.auth("boss", "admin")
        )
    assert api.gift(fan, room_id, "rose").status_code == 200
    assert withdraw(api, creator, 100).status_code == 201
    actions = [
        (e["action"], e["target"])
        for e in api.http.get("/v1/admin/log", headers=api.auth("boss", "admin")).json()["entries"]
    ]
    assert ("user.freeze", fan) in actions and ("user.unfreeze", creator) in actions


def test_catalog_edits_reach_every_process_and_never_reprice_a_gift_already_sent(money: Money) -> None:
    api, other = money.api, money.other
    admin = api.auth("boss", "admin")
    gift_id = unique("g")
    added = api.http.post(
        "/v1/admin/catalog/gifts",
        json={"id": gift_id, "name": "Comet", "coins": 7, "streakable": True},
        headers=admin,
    )
    assert added.status_code == 201
    assert (
        api.http.post(
            "/v1/admin/catalog/gifts", json={"id": gift_id, "name": "Comet", "coins": 7}, headers=admin
        ).json()["error"]["code"]
        == "gift_exists"
    )
    _, room_id = live_creator(api)
    fan = unique("v")
    api.buy(fan)
    first = api.gift(fan, room_id, gift_id, 2, key="comet-1")
    assert first.json()["cost"] == 14
    assert (
        api.http.patch(f"/v1/admin/catalog/gifts/{gift_id}", json={"coins": 10}, headers=admin).json()[
            "coins"
        ]
        == 10
    )
    assert api.gift(fan, room_id, gift_id, 2, key="comet-1").json()["cost"] == 14  # the first answer
    # The other process follows the change within about a second.
    wait_until(
        lambda: (
            {g["id"]: g["coins"] for g in other.http.get("/v1/catalog/gifts").json()["gifts"]}.get(gift_id)
            == 10
        ),
        "the other process never saw the new price",
    )
    assert other.gift(fan, room_id, gift_id, 2).json()["cost"] == 20
    assert [e["delta"] for e in api.ledger(fan) if e["kind"] == "gift"] == [-20, -14]
    assert (
        api.http.patch(
            f"/v1/admin/catalog/gifts/{gift_id}", json={"retired": True}, headers=admin
        ).status_code
        == 200
    )
    assert api.gift(fan, room_id, gift_id).json()["error"]["code"] == "unknown_gift"
    assert gift_id not in {g["id"] for g in api.http.get("/v1/catalog/gifts").json()["gifts"]}
    assert (
        api.http.patch(f"/v1/admin/catalog/gifts/{gift_id}", json={"coins": 0}, headers=admin).status_code
        == 422
    )
    assert api.http.patch("/v1/admin/catalog/gifts/nope", json={"coins": 3}, headers=admin).status_code == 404
    assert (
        api.http.patch(
            f"/v1/admin/catalog/gifts/{gift_id}", json={"coins": 3}, headers=api.auth(fan)
        ).status_code
        == 403
    )


@pytest.fixture(scope="module")
def instant(engine: Engine, logs: Path) -> Iterator[Api]:
    """A server whose hold is a millisecond, for long sequences of withdrawals."""
    prefix = f"{unique('i')}:"
    env = server_env(
        engine.url,
        prefix,
        GIFTING_DIAMOND_HOLD_S="0.001",
        GIFTING_MIN_WITHDRAWAL_DIAMONDS=str(MIN_WITHDRAWAL),
        GIFTING_DAILY_PAYOUT_CAP_MINOR="400",
        GIFTING_GIFT_RATE="1000",
        GIFTING_GIFT_BURST="1000",
    )
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
            yield Api(http)
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


def test_withdrawals_match_a_model_under_any_sequence(instant: Api) -> None:
    """Earn, request (new keys, reused keys, too little, too much, over the cap), pay, reject:
    every bucket and every answer is what a plain model of the rules says."""
    api = instant
    cap_minor = 400

    class Payouts(RuleBasedStateMachine):
        requested = Bundle("requested")
        keys = Bundle("keys")

        def __init__(self) -> None:
            super().__init__()
            self.creator = unique("c")
            self.room = api.open_room(self.creator)
            self.fan = unique("v")
            api.buy(self.fan, "us_1250")
            self.coins = 1250
            self.available = self.reserved = self.withdrawn = self.used_minor = 0
            self.by_key: dict[str, tuple[int, str]] = {}
            self.states: dict[str, tuple[int, str]] = {}

        @rule(count=st.integers(1, 60))
        def earn(self, count: int) -> None:
            cost = 5 * count  # finger hearts: 5 coins, 2 diamonds each gift of 5, floor per gift
            if cost > self.coins:
                api.buy(self.fan, "us_1250")
                self.coins += 1250
            assert api.gift(self.fan, self.room, "finger_heart", count).status_code == 200
            self.coins -= cost
            self.available += cost // 2
            # The hold is a millisecond, but a fast enough next request can still fall in it.
            wait_until(lambda: api.earnings(self.creator)["pending"] == 0, "the hold never ended")

        @rule(target=keys, diamonds=st.integers(MIN_WITHDRAWAL - 5, 400))
        def request(self, diamonds: int) -> str:
            key = unique("k")
            self._request(key, diamonds)
            return key

        @rule(key=keys, diamonds=st.integers(MIN_WITHDRAWAL, 400))
        def reuse_a_key(self, key: str, diamonds: int) -> None:
            self._request(key, diamonds)

        def _request(self, key: str, diamonds: int) -> None:
            reply = withdraw(api, self.creator, diamonds, key)
            value = diamonds * 500 // 1000
            if key in self.by_key:
                earlier, withdrawal_id = self.by_key[key]
                if earlier == diamonds:
                    assert reply.status_code == 200 and reply.json()["withdrawal_id"] == withdrawal_id
                else:
                    assert reply.json()["error"]["code"] == "idempotency_mismatch"
                return
            # Everything earned is available: ``earn`` waits for the millisecond hold to end.
            if diamonds < MIN_WITHDRAWAL:
                expected = "below_minimum_withdrawal"
            elif diamonds > self.available:
                expected = "insufficient_diamonds"
            elif self.used_minor + value > cap_minor:
                expected = "daily_payout_cap"
            else:
                assert reply.status_code == 201, reply.text
                withdrawal_id = reply.json()["withdrawal_id"]
                self.by_key[key] = (diamonds, withdrawal_id)
                self.states[withdrawal_id] = (diamonds, "requested")
                self.available -= diamonds
                self.reserved += diamonds
                self.used_minor += value
                return
            assert reply.json()["error"]["code"] == expected, (reply.text, self.available, self.used_minor)

        @rule(data=st.data(), action=st.sampled_from(["paid", "reject"]))
        def decide(self, data: st.DataObject, action: str) -> None:
            if not self.states:
                return
            withdrawal_id = data.draw(st.sampled_from(sorted(self.states)))
            diamonds, state = self.states[withdrawal_id]
            reply = decide(api, withdrawal_id, action)
            if state != "requested":
                assert reply.json()["error"]["code"] == "withdrawal_decided"
                return
            assert reply.status_code == 200, reply.text
            self.reserved -= diamonds
            if action == "paid":
                self.withdrawn += diamonds
                self.states[withdrawal_id] = (diamonds, "paid")
            else:
                self.available += diamonds
                self.used_minor -= diamonds * 500 // 1000
                self.states[withdrawal_id] = (diamonds, "rejected")

        @invariant()
        def buckets_match(self) -> None:
            earnings = api.earnings(self.creator)
            got = (earnings["available"], earnings["reserved"], earnings["withdrawn"], earnings["pending"])
            assert got == (self.available, self.reserved, self.withdrawn, 0)
            assert earnings["lifetime"] == self.available + self.reserved + self.withdrawn

    run_state_machine_as_test(
        Payouts,
        settings=settings(
            max_examples=8,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_two_chargebacks_take_back_the_diamonds_of_both_purchases_gifts(money: Money) -> None:
    """Coins carry no identity: whichever purchase paid which gift, two clawbacks of 100
    coins each take back 200 coins' worth of the buyer's gifts."""
    api = money.api
    (first_creator, first_room), (second_creator, second_room) = live_creator(api), live_creator(api)
    fraud = unique("v")
    orders = []
    for room_id in (first_room, second_room):
        order = api.buy(fraud, "us_100")
        orders.append(order)
        assert api.gift(fraud, room_id, "hand_hearts").status_code == 200  # 100 coins -> 50 diamonds
    for order in orders:
        payment_id = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(fraud)).json()[
            "payment_id"
        ]
        assert webhook(api, order, payment_id, event_type="payment.disputed").json()["clawed_back"] is True
    assert api.coins(fraud) == -200
    for creator in (first_creator, second_creator):
        wait_until(lambda c=creator: api.earnings(c)["reversed"] == 50, f"{creator} kept diamonds")
        assert api.earnings(creator)["pending"] == 0
