"""Ledger invariants over random sequences of purchases, gifts, failures and retries."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from server.domain.catalog import Catalog
from tests.support import Api, unique, webhook

CATALOG = Catalog.load_default()
GIFTS = sorted(CATALOG.gifts.values(), key=lambda g: g.coins)[:8]
PACKAGES = CATALOG.packages("US")[:3]


def test_the_books_balance_under_any_sequence_of_operations(api: Api) -> None:
    class Wallet(RuleBasedStateMachine):
        paid = Bundle("paid")
        keys = Bundle("keys")

        def __init__(self) -> None:
            super().__init__()
            self.viewer = unique("v")
            self.creator = unique("c")
            self.room = api.open_room(self.creator)
            self.coins = 0
            self.bought = 0
            self.spent = 0
            self.diamonds = 0
            self.answers: dict[str, dict[str, Any]] = {}

        @rule(target=paid, package=st.sampled_from(PACKAGES))
        def buy(self, package: Any) -> tuple[dict[str, Any], str]:
            order = api.order(self.viewer, package.id)
            payment = unique("pay_")
            reply = webhook(api, order, payment)
            assert reply.status_code == 200 and reply.json()["credited"] is True
            self.coins += package.coins
            self.bought += package.coins
            return order, payment

        @rule(paid=paid)
        def redeliver_a_payment(self, paid: tuple[dict[str, Any], str]) -> None:
            reply = webhook(api, *paid)
            assert reply.status_code == 200 and reply.json()["credited"] is False

        @rule(target=keys, gift=st.sampled_from(GIFTS), count=st.integers(1, 30))
        def gift(self, gift: Any, count: int) -> str:
            key = unique("k")
            reply = api.gift(self.viewer, self.room, gift.id, count, key=key)
            cost = gift.coins * count
            if cost <= self.coins:
                assert reply.status_code == 200, reply.text
                self.coins -= cost
                self.spent += cost
                self.diamonds += cost // 2
                self.answers[key] = {"request": (gift.id, count), "answer": reply.json()}
                assert reply.json()["coins"] == self.coins
            else:
                assert reply.status_code == 402, reply.text
            return key

        @rule(key=keys)
        def retry_a_gift(self, key: str) -> None:
            if key not in self.answers:
                return
            gift_id, count = self.answers[key]["request"]
            reply = api.gift(self.viewer, self.room, gift_id, count, key=key)
            assert reply.status_code == 200 and reply.json() == self.answers[key]["answer"]

        @rule(key=consumes(keys))
        def reuse_a_key_for_another_gift(self, key: str) -> None:
            if key not in self.answers:
                return
            gift_id, count = self.answers[key]["request"]
            reply = api.gift(self.viewer, self.room, gift_id, count % 30 + 1, key=key)
            assert reply.status_code == 409

        @rule(count=st.sampled_from([0, -1, 1000, 2.0]))
        def send_a_malformed_gift(self, count: object) -> None:
            reply = api.http.post(
                f"/v1/rooms/{self.room}/gifts",
                json={"gift_id": "rose", "count": count, "idempotency_key": unique("k")},
                headers=api.auth(self.viewer),
            )
            assert reply.status_code == 422

        @invariant()
        def balance_equals_its_ledger_and_coins_are_conserved(self) -> None:
            ledger = api.ledger(self.viewer)
            balance = api.coins(self.viewer)
            assert balance == self.coins >= 0
            assert sum(entry["delta"] for entry in ledger) == balance
            purchases = sum(e["delta"] for e in ledger if e["kind"] == "purchase")
            gifts = -sum(e["delta"] for e in ledger if e["kind"] == "gift")
            assert purchases == self.bought == balance + gifts
            assert gifts == self.spent
            for newer, older in itertools.pairwise(ledger):
                assert newer["balance"] == older["balance"] + newer["delta"]

        @invariant()
        def the_creator_earns_the_floor_of_each_gift_share(self) -> None:
            assert api.earnings(self.creator)["pending"] == self.diamonds

    run_state_machine_as_test(
        Wallet,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
