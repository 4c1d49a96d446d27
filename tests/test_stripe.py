"""Stripe, end to end: our server against localstripe, a stateful stand-in for Stripe's API run
as a process of its own, which opens the PaymentIntents, charges test cards, refunds and sends
its signed ``payment_intent.succeeded`` webhooks to the server.

localstripe sends no ``charge.refunded`` and has no disputes: those events are built here from
the objects localstripe holds (the refunded charge) and signed by Stripe's documented scheme
(``Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">``), as Stripe would.
Every money test ends with the audit of the books.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.engine import free_port, stop_process
from server.settings import Settings, SettingsError
from tests.conftest import Engine
from tests.support import Api, delete_prefix, running_server, server_env, unique, webhook
from tests.test_clawbacks import Books

SECRET_KEY = "sk_test_gifting0123456789"
PUBLISHABLE_KEY = "pk_test_gifting0123456789"
# The endpoint's signing secret, and the one it replaces: both are accepted during a rotation.
NEW_SECRET = "whsec_new_Hk7Tn2Qw9Lp4Xs6Vb1Md8Rf3"
OLD_SECRET = "whsec_old_Zq3vX9pL2mK8wR4tY7uB1nC6"
STRANGER_SECRET = "whsec_other_Jd5Wm1Ns7Qc3Ve9Ka2Bx8"
EVENTS = ["payment_intent.succeeded", "charge.refunded", "charge.dispute.created"]
WEBHOOK = "/v1/payments/stripe/webhook"
DEADLINE_S = 20.0


def wait_for(check: Callable[[], bool], what: str, limit_s: float = DEADLINE_S) -> None:
    """Poll ``check`` until it holds; fail saying ``what`` did not happen within ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, f"{what} within {limit_s} s"
        time.sleep(0.05)


@dataclass
class LocalStripe:
    url: str
    http: httpx.Client

    def register(self, name: str, url: str, secret: str) -> None:
        reply = self.http.post(
            f"/_config/webhooks/{name}", json={"url": url, "secret": secret, "events": EVENTS}
        )
        assert reply.status_code == 200, reply.text

    def intent(self, intent_id: str) -> dict[str, Any]:
        reply = self.http.get(f"/v1/payment_intents/{intent_id}")
        assert reply.status_code == 200, reply.text
        intent: dict[str, Any] = reply.json()
        return intent

    def create_intent(self, amount: int, currency: str, metadata: dict[str, str]) -> str:
        """A PaymentIntent made straight on the account, as the server would never make it."""
        data = {"amount": amount, "currency": currency, **{f"metadata[{k}]": v for k, v in metadata.items()}}
        reply = self.http.post("/v1/payment_intents", data=data)
        assert reply.status_code == 200, reply.text
        intent_id: str = reply.json()["id"]
        return intent_id

    def pay(self, intent_id: str) -> str:
        """Pay the PaymentIntent with Stripe's test Visa card, as Stripe.js does for a page;
        the charge's id. localstripe then sends ``payment_intent.succeeded``."""
        reply = self.http.post(f"/v1/payment_intents/{intent_id}", data={"payment_method": "pm_card_visa"})
        assert reply.status_code == 200, reply.text
        reply = self.http.post(f"/v1/payment_intents/{intent_id}/confirm")
        assert reply.status_code == 200 and reply.json()["status"] == "succeeded", reply.text
        charge = reply.json()["latest_charge"]
        charge_id: str = charge if isinstance(charge, str) else charge["id"]
        return charge_id

    def refund(self, intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """Refund through localstripe; the refunded charge, as ``charge.refunded`` carries it."""
        data: dict[str, Any] = {"payment_intent": intent_id}
        if amount is not None:
            data["amount"] = amount
        reply = self.http.post("/v1/refunds", data=data)
        assert reply.status_code == 200, reply.text
        return self.charge(reply.json()["charge"])

    def charge(self, charge_id: str) -> dict[str, Any]:
        reply = self.http.get(f"/v1/charges/{charge_id}")
        assert reply.status_code == 200, reply.text
        charge: dict[str, Any] = reply.json()
        return charge

    def refunds(self, intent_id: str) -> list[dict[str, Any]]:
        reply = self.http.get("/v1/refunds", params={"payment_intent": intent_id})
        assert reply.status_code == 200, reply.text
        refunds: list[dict[str, Any]] = reply.json()["data"]
        return refunds


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    port = free_port()
    workdir = tmp_path_factory.mktemp("localstripe")
    with (workdir / "localstripe.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (workdir / "localstripe.log").read_text()
            try:
                if httpx.get(f"{url}/js.stripe.com/v3/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "localstripe did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=url, auth=(SECRET_KEY, ""), timeout=10) as http:
            yield LocalStripe(url, http)
    finally:
        stop_process(process, 10)


def stripe_env(engine: Engine, prefix: str, localstripe: LocalStripe, **overrides: str) -> dict[str, str]:
    stripe = {
        "GIFTING_STRIPE_SECRET_KEY": SECRET_KEY,
        "GIFTING_STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "GIFTING_STRIPE_WEBHOOK_SECRETS": f"{NEW_SECRET},{OLD_SECRET}",
        "GIFTING_STRIPE_API_BASE": localstripe.url,
        "GIFTING_STRIPE_JS_URL": f"{localstripe.url}/js.stripe.com/v3/",
    }
    return server_env(engine.url, prefix, **{**stripe, **overrides})


@contextmanager
def stripe_server(
    engine: Engine, logs: Path, localstripe: LocalStripe, name: str, **overrides: str
) -> Iterator[Books]:
    """A server of its own books taking Stripe, registered as localstripe's webhook ``name``."""
    prefix = f"{unique('st')}:"
    try:
        with (
            running_server(stripe_env(engine, prefix, localstripe, **overrides), logs) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as http,
        ):
            localstripe.register(name, f"{server.base_url}{WEBHOOK}", NEW_SECRET)
            yield Books(Api(http), server.base_url, prefix, engine.url)
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@pytest.fixture(scope="module")
def books(engine: Engine, logs: Path, localstripe: LocalStripe) -> Iterator[Books]:
    with stripe_server(engine, logs, localstripe, "main") as books:
        yield books


def audited(books: Books) -> None:
    result = books.audit()
    assert result.ok, result.report()


def stripe_order(api: Api, user_id: str, package_id: str = "us_550") -> dict[str, Any]:
    reply = api.http.post(
        "/v1/purchases",
        json={"package_id": package_id, "region": "US", "provider": "stripe"},
        headers=api.auth(user_id),
    )
    assert reply.status_code == 201, reply.text
    order: dict[str, Any] = reply.json()
    return order


def order_of(api: Api, user_id: str, order_id: str) -> dict[str, Any]:
    reply = api.http.get(f"/v1/purchases/{order_id}", headers=api.auth(user_id))
    assert reply.status_code == 200, reply.text
    order: dict[str, Any] = reply.json()
    return order


def paid(api: Api, user_id: str, order_id: str) -> None:
    wait_for(lambda: order_of(api, user_id, order_id)["state"] == "paid", f"order {order_id} paid")


def sign(body: bytes, secret: str, at: int | None = None) -> str:
    """Stripe's documented signature of ``body``."""
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(kind: str, thing: dict[str, Any]) -> bytes:
    return json.dumps(
        {"id": unique("evt_"), "object": "event", "type": kind, "data": {"object": thing}}, indent=2
    ).encode()


def deliver(api: Api, body: bytes, secret: str = NEW_SECRET, at: int | None = None) -> httpx.Response:
    headers = {"Stripe-Signature": sign(body, secret, at), "content-type": "application/json"}
    return api.http.post(WEBHOOK, content=body, headers=headers)


def dispute(charge: dict[str, Any]) -> bytes:
    """The ``charge.dispute.created`` Stripe sends when a buyer disputes ``charge``."""
    return event(
        "charge.dispute.created",
        {
            "id": unique("dp_"),
            "object": "dispute",
            "amount": charge["amount"],
            "currency": charge["currency"],
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "reason": "fraudulent",
            "status": "needs_response",
        },
    )


def bought(books: Books, localstripe: LocalStripe, user_id: str) -> tuple[dict[str, Any], str]:
    """An order of 550 coins paid through Stripe and credited: the order and its charge id."""
    order = stripe_order(books.api, user_id)
    charge_id = localstripe.pay(order["stripe"]["payment_intent"])
    paid(books.api, user_id, order["order_id"])
    return order, charge_id


def test_providers_name_stripe_and_what_a_page_needs(books: Books, localstripe: LocalStripe) -> None:
    reply = books.api.http.get("/v1/payments/providers")
    assert reply.status_code == 200
    assert reply.json() == {
        "web": "stripe",
        "providers": ["sandbox", "stripe"],
        "stripe": {"publishable_key": PUBLISHABLE_KEY, "js_url": f"{localstripe.url}/js.stripe.com/v3/"},
    }


def test_a_card_payment_credits_the_order_once(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order = stripe_order(api, buyer)
    block = order["stripe"]
    intent_id = block["payment_intent"]
    assert block["client_secret"].startswith(f"{intent_id}_secret_")
    assert (block["publishable_key"], block["js_url"]) == (
        PUBLISHABLE_KEY,
        f"{localstripe.url}/js.stripe.com/v3/",
    )
    assert (order["state"], order["provider"], order["price"]) == (
        "pending",
        "stripe",
        {"amount_minor": 999, "currency": "USD"},
    )
    intent = localstripe.intent(intent_id)
    assert (intent["amount"], intent["currency"]) == (999, "usd")
    assert intent["metadata"] == {"order_id": order["order_id"], "user_id": buyer, "books": books.prefix}
    assert api.coins(buyer) == 0

    localstripe.pay(intent_id)
    paid(api, buyer, order["order_id"])
    assert api.coins(buyer) == 550
    [entry] = api.ledger(buyer)
    assert (entry["kind"], entry["delta"], entry["balance"], entry["ref"], entry["payment_id"]) == (
        "purchase",
        550,
        550,
        order["order_id"],
        intent_id,
    )
    assert order_of(api, buyer, order["order_id"])["payment_id"] == intent_id
    # Stripe redelivers (here signed with the secret being rotated out): nothing more.
    again = deliver(api, event("payment_intent.succeeded", localstripe.intent(intent_id)), OLD_SECRET)
    assert again.status_code == 200, again.text
    assert again.json() == {"received": True, "handled": True, "credited": False}
    assert api.coins(buyer) == 550 and len(api.ledger(buyer)) == 1
    audited(books)


def test_a_full_refund_claws_the_purchase_back(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order, _ = bought(books, localstripe, buyer)
    intent_id = order["stripe"]["payment_intent"]
    charge = localstripe.refund(intent_id)
    assert (charge["refunded"], charge["amount_refunded"]) == (True, 999)
    body = event("charge.refunded", charge)
    reply = deliver(api, body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "handled": True, "clawed_back": True}
    assert api.coins(buyer) == 0
    state = order_of(api, buyer, order["order_id"])
    assert state["state"] == "refunded" and state["payment_id"] == intent_id
    latest = api.ledger(buyer)[0]
    assert (latest["kind"], latest["delta"], latest["balance"], latest["reason"]) == (
        "clawback",
        -550,
        0,
        "refunded",
    )
    # Redelivered: taken back once.
    assert deliver(api, body).json()["clawed_back"] is False
    assert api.coins(buyer) == 0 and len(api.ledger(buyer)) == 2
    audited(books)


def test_a_refund_after_the_coins_were_spent_reverses_the_gifts(
    books: Books, localstripe: LocalStripe
) -> None:
    api = books.api
    buyer, creator = unique("v"), unique("c")
    room_id = api.open_room(creator)
    order, _ = bought(books, localstripe, buyer)
    assert api.gift(buyer, room_id, "hand_hearts", 2).status_code == 200  # 200 coins -> 100 diamonds
    assert api.coins(buyer) == 350 and api.earnings(creator)["pending"] == 100
    charge = localstripe.refund(order["stripe"]["payment_intent"])
    reply = deliver(api, event("charge.refunded", charge))
    assert reply.status_code == 200 and reply.json()["clawed_back"] is True, reply.text
    assert api.coins(buyer) == 350 - 550
    wait_for(lambda: api.earnings(creator)["pending"] == 0, "the creator's pending diamonds reversed")
    earnings = api.earnings(creator)
    assert (earnings["reversed"], earnings["lifetime"]) == (100, 100)
    blocked = api.gift(buyer, room_id, "rose")
    assert blocked.status_code == 402 and blocked.json()["error"]["code"] == "negative_balance"
    audited(books)


def test_a_partial_refund_takes_nothing_back(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order, _ = bought(books, localstripe, buyer)
    charge = localstripe.refund(order["stripe"]["payment_intent"], amount=300)
    assert (charge["refunded"], charge["amount_refunded"]) == (False, 300)
    reply = deliver(api, event("charge.refunded", charge))
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "handled": True, "clawed_back": False, "partial": True}
    assert api.coins(buyer) == 550
    assert order_of(api, buyer, order["order_id"])["state"] == "paid"
    audited(books)


def test_a_dispute_charges_the_purchase_back(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order, charge_id = bought(books, localstripe, buyer)
    body = dispute(localstripe.charge(charge_id))
    reply = deliver(api, body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "handled": True, "clawed_back": True}
    assert api.coins(buyer) == 0
    assert order_of(api, buyer, order["order_id"])["state"] == "charged_back"
    assert api.ledger(buyer)[0]["reason"] == "charged_back"
    # A refund on top of the lost dispute takes nothing more.
    charge = localstripe.refund(order["stripe"]["payment_intent"])
    assert deliver(api, event("charge.refunded", charge)).json()["clawed_back"] is False
    assert deliver(api, body).json()["clawed_back"] is False
    assert api.coins(buyer) == 0 and len(api.ledger(buyer)) == 2
    audited(books)


def test_a_dispute_before_the_payment_is_credited_is_refused_until_it_is(
    books: Books, localstripe: LocalStripe
) -> None:
    """Stripe does not promise the order of its events: a dispute that arrives before the
    payment's success answers 409 (Stripe delivers it again later) and changes nothing."""
    api = books.api
    buyer = unique("v")
    order = stripe_order(api, buyer)
    intent_id = order["stripe"]["payment_intent"]
    early = dispute({"id": unique("ch_"), "amount": 999, "currency": "usd", "payment_intent": intent_id})
    reply = deliver(api, early)
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "order_not_paid", reply.text
    assert api.coins(buyer) == 0 and order_of(api, buyer, order["order_id"])["state"] == "pending"
    localstripe.pay(intent_id)
    paid(api, buyer, order["order_id"])
    assert api.coins(buyer) == 550
    redelivered = deliver(api, early)
    assert redelivered.status_code == 200 and redelivered.json()["clawed_back"] is True, redelivered.text
    assert api.coins(buyer) == 0
    assert order_of(api, buyer, order["order_id"])["state"] == "charged_back"
    audited(books)


def test_a_bad_signature_is_refused_and_changes_nothing(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order, charge_id = bought(books, localstripe, buyer)
    body = dispute(localstripe.charge(charge_id))
    now = int(time.time())
    forged = f"t={now},v1={'0' * 64}"
    refusals = [
        api.http.post(WEBHOOK, content=body, headers={"Stripe-Signature": forged}),
        api.http.post(WEBHOOK, content=body),  # no signature at all
        api.http.post(WEBHOOK, content=body, headers={"Stripe-Signature": "v1=abc"}),
        deliver(api, body, at=now - 600),  # a captured event replayed after the tolerance
        deliver(api, body, STRANGER_SECRET),  # signed with a secret that is not ours
        api.http.post(WEBHOOK, content=body[:-20], headers={"Stripe-Signature": sign(body, NEW_SECRET)}),
        api.http.post(WEBHOOK, content=b"\xff" + body, headers={"Stripe-Signature": sign(body, NEW_SECRET)}),
    ]
    for reply in refusals:
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "bad_signature", reply.text
    assert api.coins(buyer) == 550 and order_of(api, buyer, order["order_id"])["state"] == "paid"
    # Well signed, but no event: 422, still nothing changed.
    for bad in (b"{not json", b'{"id": "evt_1", "type": "charge.refunded", "data": {"object": {"id": 5}}}'):
        reply = deliver(api, bad)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", reply.text
    # Events this server does not act on are acknowledged.
    other = deliver(api, event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert other.status_code == 200 and other.json() == {"received": True, "handled": False}
    assert api.coins(buyer) == 550 and len(api.ledger(buyer)) == 1
    audited(books)


def test_both_secrets_of_a_rotation_are_accepted(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order, charge_id = bought(books, localstripe, buyer)
    body = dispute(localstripe.charge(charge_id))
    # Stripe signs with both secrets during a rotation: one header, two v1 entries.
    now = int(time.time())
    both = f"{sign(body, STRANGER_SECRET, now)},v1={sign(body, OLD_SECRET, now).split('v1=')[1]}"
    reply = api.http.post(WEBHOOK, content=body, headers={"Stripe-Signature": both})
    assert reply.status_code == 200 and reply.json()["clawed_back"] is True, reply.text
    assert deliver(api, body, NEW_SECRET).json()["clawed_back"] is False
    assert api.coins(buyer) == 0 and order_of(api, buyer, order["order_id"])["state"] == "charged_back"
    audited(books)


def test_a_payment_naming_another_users_order_credits_its_owner_once(
    books: Books, localstripe: LocalStripe
) -> None:
    """A PaymentIntent whose metadata names B's order (and another user) credits B, the order's
    owner, once; B's own PaymentIntent, paid after it, is refunded."""
    api = books.api
    owner, other = unique("v"), unique("v")
    order = stripe_order(api, owner)
    stray = localstripe.create_intent(
        999, "usd", {"order_id": order["order_id"], "user_id": other, "books": books.prefix}
    )
    localstripe.pay(stray)
    paid(api, owner, order["order_id"])
    assert (api.coins(owner), api.coins(other)) == (550, 0)
    assert order_of(api, owner, order["order_id"])["payment_id"] == stray
    own = order["stripe"]["payment_intent"]
    localstripe.pay(own)
    wait_for(lambda: len(localstripe.refunds(own)) == 1, "the second payment of the order refunded")
    assert localstripe.refunds(own)[0]["amount"] == 999
    assert (api.coins(owner), api.coins(other)) == (550, 0)
    assert len(api.ledger(owner)) == 1 and api.ledger(other) == []
    audited(books)


def test_a_stripe_order_is_not_paid_by_the_sandbox(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order = stripe_order(api, buyer)
    reply = webhook(api, order, unique("pay_"))
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "provider_mismatch", reply.text
    assert api.coins(buyer) == 0
    localstripe.pay(order["stripe"]["payment_intent"])
    paid(api, buyer, order["order_id"])
    assert api.coins(buyer) == 550 and len(api.ledger(buyer)) == 1
    audited(books)


def test_a_stripe_payment_of_a_sandbox_order_is_refunded(books: Books, localstripe: LocalStripe) -> None:
    api = books.api
    buyer = unique("v")
    order = api.buy(buyer)  # opened and paid through the sandbox
    assert order["provider"] == "sandbox"
    intent_id = localstripe.create_intent(
        999, "usd", {"order_id": order["order_id"], "user_id": buyer, "books": books.prefix}
    )
    localstripe.pay(intent_id)
    wait_for(
        lambda: len(localstripe.refunds(intent_id)) == 1, "the Stripe payment of a sandbox order refunded"
    )
    assert api.coins(buyer) == 550 and len(api.ledger(buyer)) == 1
    assert order_of(api, buyer, order["order_id"])["provider"] == "sandbox"
    audited(books)


def test_a_payment_of_the_wrong_amount_flags_the_order_and_is_kept(
    books: Books, localstripe: LocalStripe
) -> None:
    """Answered 200 so that Stripe stops redelivering: the order is flagged for a person to
    decide (credit or refund by hand), nothing is credited, nothing refunded."""
    api = books.api
    for amount, currency in ((500, "usd"), (999, "eur")):
        buyer = unique("v")
        order = stripe_order(api, buyer)
        metadata = {"order_id": order["order_id"], "user_id": buyer, "books": books.prefix}
        short = localstripe.create_intent(amount, currency, metadata)
        localstripe.pay(short)
        wait_for(
            lambda: order_of(api, buyer, order["order_id"])["state"] == "flagged",  # noqa: B023
            "the order flagged",
        )
        answer = deliver(api, event("payment_intent.succeeded", localstripe.intent(short)))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "received": True,
            "handled": True,
            "credited": False,
            "flagged": True,
            "reason": "order_flagged",
        }
        assert order_of(api, buyer, order["order_id"])["flag"] == "amount_mismatch"
        assert api.coins(buyer) == 0 and api.ledger(buyer) == []
        assert localstripe.refunds(short) == []
    audited(books)


def test_a_payment_of_another_deployment_is_left_alone(books: Books, localstripe: LocalStripe) -> None:
    """Every endpoint of a Stripe account gets all its events: a PaymentIntent this server did
    not open (other books) is acknowledged, neither credited nor refunded."""
    api = books.api
    buyer = unique("v")
    order = stripe_order(api, buyer)
    intent = localstripe.intent(order["stripe"]["payment_intent"])
    foreign = {**intent, "metadata": {**intent["metadata"], "books": "elsewhere:"}}
    reply = deliver(api, event("payment_intent.succeeded", foreign))
    assert reply.status_code == 200 and reply.json() == {"received": True, "handled": False}
    assert api.coins(buyer) == 0 and order_of(api, buyer, order["order_id"])["state"] == "pending"


def test_a_payment_for_an_expired_order_is_refunded(
    engine: Engine, logs: Path, localstripe: LocalStripe
) -> None:
    with stripe_server(engine, logs, localstripe, "short", GIFTING_ORDER_TTL_S="1") as short:
        api = short.api
        buyer = unique("v")
        order = stripe_order(api, buyer)

        def gone() -> bool:
            reply = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(buyer))
            return reply.status_code == 404

        wait_for(gone, "the unpaid order expired")
        intent_id = order["stripe"]["payment_intent"]
        localstripe.pay(intent_id)
        wait_for(lambda: len(localstripe.refunds(intent_id)) == 1, "the payment of an expired order refunded")
        [refund] = localstripe.refunds(intent_id)
        assert (refund["amount"], refund["metadata"]) == (999, {"reason": "no_order"})
        assert api.coins(buyer) == 0 and api.ledger(buyer) == []
        # The refund Stripe then reports takes nothing back: no order holds the payment.
        charge = localstripe.charge(refund["charge"])
        answer = deliver(api, event("charge.refunded", charge))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "received": True,
            "handled": True,
            "clawed_back": False,
            "reason": "not_credited",
        }
        assert api.coins(buyer) == 0
        audited(short)


def test_stripe_out_of_reach_answers_502_and_credits_nothing(
    engine: Engine, logs: Path, localstripe: LocalStripe
) -> None:
    prefix = f"{unique('st')}:"
    closed = f"http://127.0.0.1:{free_port()}"
    env = stripe_env(engine, prefix, localstripe, GIFTING_STRIPE_API_BASE=closed)
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=30) as http:
            api = Api(http)
            buyer = unique("v")
            reply = http.post(
                "/v1/purchases",
                json={"package_id": "us_550", "provider": "stripe"},
                headers=api.auth(buyer),
            )
            assert reply.status_code == 502, reply.text
            error = reply.json()["error"]
            assert error["code"] == "provider_error" and "could not be reached" in error["message"]
            assert api.coins(buyer) == 0
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


def test_a_server_without_stripe_refuses_it(api: Api, viewer: str) -> None:
    reply = api.http.post(
        "/v1/purchases", json={"package_id": "us_550", "provider": "stripe"}, headers=api.auth(viewer)
    )
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "provider_unavailable", reply.text
    hook = api.http.post(WEBHOOK, content=b"{}", headers={"Stripe-Signature": sign(b"{}", NEW_SECRET)})
    assert hook.status_code == 503 and hook.json()["error"]["code"] == "provider_unavailable", hook.text
    providers = api.http.get("/v1/payments/providers")
    assert providers.json() == {"web": "sandbox", "providers": ["sandbox"]}
    assert api.coins(viewer) == 0


STRIPE = {
    "GIFTING_DEMO": "1",
    "GIFTING_STRIPE_SECRET_KEY": SECRET_KEY,
    "GIFTING_STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
    "GIFTING_STRIPE_WEBHOOK_SECRETS": f" {NEW_SECRET} , {OLD_SECRET} ",
}


@pytest.mark.pure
def test_stripe_settings_are_all_or_none() -> None:
    on = Settings.from_env(STRIPE)
    assert on.stripe_enabled and on.stripe_webhook_secrets == (NEW_SECRET, OLD_SECRET)
    assert (on.stripe_api_base, on.stripe_js_url) == ("https://api.stripe.com", "https://js.stripe.com/v3/")
    assert not Settings.from_env({"GIFTING_DEMO": "1"}).stripe_enabled
    for name in STRIPE:
        if name != "GIFTING_DEMO":
            with pytest.raises(SettingsError, match=f"{name} unset"):
                Settings.from_env({**STRIPE, name: ""})
    wrong = [
        ("GIFTING_STRIPE_SECRET_KEY", PUBLISHABLE_KEY, "must start with sk_"),
        ("GIFTING_STRIPE_PUBLISHABLE_KEY", SECRET_KEY, "must start with pk_"),
        ("GIFTING_STRIPE_WEBHOOK_SECRETS", "secret", "whsec_"),
        ("GIFTING_STRIPE_SECRET_KEY", "sk_live_gifting0123456789", "different modes"),
        ("GIFTING_STRIPE_API_BASE", "api.stripe.com", "http"),
        ("GIFTING_STRIPE_JS_URL", "javascript:alert(1)", "http"),
    ]
    for name, value, problem in wrong:
        with pytest.raises(SettingsError, match=problem):
            Settings.from_env({**STRIPE, name: value})
