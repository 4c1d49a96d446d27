"""Purchases: coins appear only through a verified payment webhook, exactly once per payment."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

from server.auth import issue_token
from server.domain import webhooks
from server.keys import KeySchema
from tests.conftest import Engine
from tests.support import (
    JWT_SECRET,
    WEBHOOK_SECRET,
    Api,
    engine_client,
    running_server,
    server_env,
    unique,
    webhook,
)


def test_a_new_order_is_pending_and_credits_nothing(api: Api, viewer: str) -> None:
    order = api.order(viewer, "gb_1250", "GB")
    assert order["state"] == "pending"
    assert order["price"] == {"amount_minor": 1799, "currency": "GBP"}
    assert order["coins"] == 1250
    assert api.coins(viewer) == 0


def test_the_catalog_lists_packages_per_region(api: Api) -> None:
    reply = api.http.get("/v1/catalog/packages", params={"region": "US"})
    assert reply.status_code == 200
    assert reply.json()["packages"][1] == {
        "id": "us_550",
        "coins": 550,
        "price": {"amount_minor": 999, "currency": "USD"},
    }
    assert api.http.get("/v1/catalog/packages", params={"region": "ZZ"}).json()["error"]["code"] == (
        "unknown_region"
    )
    gifts = api.http.get("/v1/catalog/gifts").json()["gifts"]
    rose = {
        "id": "rose",
        "name": "Rose",
        "coins": 1,
        "streakable": True,
        "animation": "rose-float",
        "tier": 1,
    }
    assert rose in gifts


def test_a_verified_webhook_credits_the_order_once(api: Api, viewer: str) -> None:
    order = api.order(viewer)
    payment = unique("pay_")
    first = webhook(api, order, payment)
    assert first.status_code == 200 and first.json()["credited"] is True
    for _ in range(3):
        again = webhook(api, order, payment)
        assert again.status_code == 200 and again.json()["credited"] is False
    assert api.coins(viewer) == 550
    [entry] = api.ledger(viewer)
    assert (entry["kind"], entry["delta"], entry["balance"], entry["ref"]) == (
        "purchase",
        550,
        550,
        order["order_id"],
    )
    assert entry["payment_id"] == payment
    state = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(viewer)).json()
    assert state["state"] == "paid" and state["payment_id"] == payment


def test_concurrent_deliveries_of_one_payment_credit_once(api: Api, viewer: str) -> None:
    order = api.order(viewer, "us_100")
    payment = unique("pay_")
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda _: webhook(api, order, payment), range(32)))
    assert all(reply.status_code == 200 for reply in replies)
    assert sum(reply.json()["credited"] for reply in replies) == 1
    assert api.coins(viewer) == 100
    assert len(api.ledger(viewer)) == 1


def test_a_second_payment_for_a_paid_order_credits_nothing(api: Api, viewer: str) -> None:
    order = api.order(viewer, "us_100")
    assert webhook(api, order, unique("pay_")).status_code == 200
    reply = webhook(api, order, unique("pay_"))
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "order_already_paid"
    assert api.coins(viewer) == 100


def test_one_payment_cannot_pay_two_orders(api: Api, viewer: str) -> None:
    first, second = api.order(viewer, "us_100"), api.order(viewer, "us_100")
    payment = unique("pay_")
    assert webhook(api, first, payment).status_code == 200
    reply = webhook(api, second, payment)
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "payment_reused"
    assert api.coins(viewer) == 100


def test_a_bad_or_stale_signature_is_refused_and_credits_nothing(api: Api, viewer: str) -> None:
    order = api.order(viewer)
    forged = webhook(api, order, unique("pay_"), secret="not-the-webhook-secret-000")
    stale = webhook(api, order, unique("pay_"), at=int(time.time()) - 301)
    future = webhook(api, order, unique("pay_"), at=int(time.time()) + 301)
    unsigned = api.http.post("/v1/payments/webhook", content=b"{}")
    for reply in (forged, stale, future, unsigned):
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "bad_signature"
    assert api.coins(viewer) == 0
    assert api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(viewer)).json()["state"] == (
        "pending"
    )


def test_a_webhook_for_an_unknown_order_is_404(api: Api) -> None:
    fake = {"order_id": unique("ord_"), "price": {"amount_minor": 999, "currency": "USD"}}
    reply = webhook(api, fake, unique("pay_"))
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


def test_a_wrong_amount_or_currency_flags_the_order_and_credits_nothing(api: Api, viewer: str) -> None:
    short = api.order(viewer)
    reply = webhook(api, short, unique("pay_"), amount=1)
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "amount_mismatch"
    euros = api.order(viewer)
    assert webhook(api, euros, unique("pay_"), currency="EUR").status_code == 409
    # The flag sticks: a later, correct payment for a flagged order still credits nothing.
    retry = webhook(api, short, unique("pay_"))
    assert retry.status_code == 409 and retry.json()["error"]["code"] == "order_flagged"
    assert api.coins(viewer) == 0
    state = api.http.get(f"/v1/purchases/{short['order_id']}", headers=api.auth(viewer)).json()
    assert (state["state"], state["flag"]) == ("flagged", "amount_mismatch")


def test_unhandled_event_types_are_acknowledged_and_ignored(api: Api, viewer: str) -> None:
    order = api.order(viewer)
    reply = webhook(api, order, unique("pay_"), event_type="payment.created")
    assert reply.status_code == 200 and reply.json()["handled"] is False
    assert api.coins(viewer) == 0


def test_a_signed_webhook_with_a_malformed_body_is_422(api: Api) -> None:
    for body in (b"not json", b'{"id":"e","type":"payment.succeeded","data":{"order_id":"o"}}'):
        header = webhooks.sign(body, WEBHOOK_SECRET, int(time.time()))
        reply = api.http.post("/v1/payments/webhook", content=body, headers={webhooks.HEADER: header})
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request"


def test_an_order_is_visible_only_to_its_owner(api: Api, viewer: str) -> None:
    """Another user's order answers exactly as an order that does not exist: nothing tells
    a stranger that the id is taken."""
    order = api.order(viewer)
    other = unique("v")
    missing = unique("ord_")
    for order_id in (order["order_id"], missing):
        read = api.http.get(f"/v1/purchases/{order_id}", headers=api.auth(other))
        paid = api.pay(other, order_id)
        assert (read.status_code, paid.status_code) == (404, 404)
        assert (
            read.json()
            == paid.json()
            == {"error": {"code": "not_found", "message": f"no order {order_id!r}"}}
        )
    assert api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(viewer)).status_code == 200
    assert api.coins(viewer) == 0 and api.coins(other) == 0


def test_the_ledger_pages_with_a_cursor(api: Api, viewer: str) -> None:
    for _ in range(5):
        api.buy(viewer, "us_100")
    reply = api.http.get("/v1/wallet/ledger", params={"limit": 2}, headers=api.auth(viewer)).json()
    assert len(reply["entries"]) == 2 and reply["next_cursor"]
    entries = api._pages("/v1/wallet/ledger", api.auth(viewer), 2)
    assert [e["balance"] for e in entries] == [500, 400, 300, 200, 100]
    bad = api.http.get("/v1/wallet/ledger", params={"cursor": "{x}"}, headers=api.auth(viewer))
    assert bad.status_code == 422


def order_keys(keys: KeySchema, user_id: str, order_id: str) -> tuple[str, str]:
    return keys.order_owner(order_id), keys.user(user_id).order(order_id)


def test_a_pending_order_expires_and_a_paid_one_stays(engine: Engine, key_prefix: str, logs: Path) -> None:
    """Unpaid orders cannot pile up in the engine: both keys of a pending order expire after
    GIFTING_ORDER_TTL_S; a payment makes them part of the books, kept for good. A payment for
    an expired order is refused (so the provider retries and flags it), credits nothing and
    is logged."""
    keys = KeySchema(key_prefix)
    env = server_env(engine.url, key_prefix, GIFTING_ORDER_TTL_S="2")
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = Api(http)
        buyer = unique("v")
        pending, paid = api.order(buyer), api.order(buyer)
        payment = unique("pay_")
        assert webhook(api, paid, payment).json()["credited"] is True
        with engine_client(engine.url) as client:
            for key in order_keys(keys, buyer, pending["order_id"]):
                assert 0 < client.pttl(key) <= 2_000, key
            for key in order_keys(keys, buyer, paid["order_id"]):
                assert client.pttl(key) == -1, key
            deadline = time.monotonic() + 10
            while client.exists(*order_keys(keys, buyer, pending["order_id"])):
                assert time.monotonic() < deadline, "the pending order never expired"
                time.sleep(0.1)
            assert client.exists(*order_keys(keys, buyer, paid["order_id"])) == 2
        assert http.get(f"/v1/purchases/{pending['order_id']}", headers=api.auth(buyer)).status_code == 404
        kept = http.get(f"/v1/purchases/{paid['order_id']}", headers=api.auth(buyer)).json()
        assert (kept["state"], kept["payment_id"]) == ("paid", payment)
        late = unique("pay_")
        refused = webhook(api, pending, late)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert api.coins(buyer) == 550
        assert [entry["ref"] for entry in api.ledger(buyer)] == [paid["order_id"]]
        deadline = time.monotonic() + 5
        while f"payment {late!r} for order {pending['order_id']!r}" not in server.log_path.read_text():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.05)


def test_a_pending_order_lives_a_day_by_default(
    api: Api, engine: Engine, key_prefix: str, viewer: str
) -> None:
    order = api.order(viewer)
    with engine_client(engine.url) as client:
        for key in order_keys(KeySchema(key_prefix), viewer, order["order_id"]):
            assert 86_390 <= client.ttl(key) <= 86_400, key


def slot_keys(client: redis.Redis, keys: KeySchema, user_id: str) -> dict[str, int]:
    """Every key of the user's slot and every order owner pointer naming the user, with its
    time to live (ms; -1 for none)."""
    found = set(client.scan_iter(match=f"{keys.user(user_id).tag}*", count=1000))
    found |= {
        key for key in client.scan_iter(match=keys.order_owner("*"), count=1000) if client.get(key) == user_id
    }
    return {key: client.pttl(key) for key in found}


def post_order(api: Api, user_id: str) -> httpx.Response:
    return api.http.post(
        "/v1/purchases", json={"package_id": "us_550", "region": "US"}, headers=api.auth(user_id)
    )


def refused_order(api: Api, user_id: str) -> None:
    reply = post_order(api, user_id)
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == "too_many_pending_orders"


def test_the_order_over_the_pending_cap_is_refused_and_changes_nothing(
    api: Api, engine: Engine, key_prefix: str, viewer: str
) -> None:
    """A user holds at most GIFTING_MAX_PENDING_ORDERS (20) unpaid orders at once: the 21st is
    refused, writes no key and moves no coin; paying one of the 20 frees a place."""
    keys = KeySchema(key_prefix)
    api.buy(viewer, "us_100")
    orders = [api.order(viewer) for _ in range(20)]
    with engine_client(engine.url) as client:
        before = slot_keys(client, keys, viewer)
        refused_order(api, viewer)
        assert slot_keys(client, keys, viewer).keys() == before.keys()
    assert api.coins(viewer) == 100
    assert webhook(api, orders[0], unique("pay_")).json()["credited"] is True
    api.order(viewer)
    refused_order(api, viewer)
    assert api.coins(viewer) == 650


def test_an_expired_order_frees_a_place_under_the_pending_cap(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    keys = KeySchema(key_prefix)
    env = server_env(engine.url, key_prefix, GIFTING_ORDER_TTL_S="1", GIFTING_MAX_PENDING_ORDERS="2")
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = Api(http)
        buyer = unique("v")
        first, _ = api.order(buyer), api.order(buyer)
        refused_order(api, buyer)
        with engine_client(engine.url) as client:
            deadline = time.monotonic() + 10
            while client.exists(*order_keys(keys, buyer, first["order_id"])):
                assert time.monotonic() < deadline, "the pending order never expired"
                time.sleep(0.05)
        api.order(buyer)


def test_a_burst_of_orders_from_one_user_never_passes_the_pending_cap(
    api: Api, engine: Engine, key_prefix: str, viewer: str
) -> None:
    api.token(viewer)
    with ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda _: post_order(api, viewer), range(60)))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [201] * 20 + [409] * 40, statuses
    created = {reply.json()["order_id"] for reply in replies if reply.status_code == 201}
    user = KeySchema(key_prefix).user(viewer)
    with engine_client(engine.url) as client:
        assert {key for key in client.scan_iter(match=user.order("*"))} == {user.order(o) for o in created}
        assert set(client.zrange(user.pending_orders, 0, -1)) == created


def test_an_order_and_its_place_under_the_cap_expire_with_it(
    api: Api, engine: Engine, key_prefix: str, viewer: str
) -> None:
    keys = KeySchema(key_prefix)
    first = api.order(viewer)
    second = api.order(viewer)
    with engine_client(engine.url) as client:
        for order in (first, second):
            for key in order_keys(keys, viewer, order["order_id"]):
                assert 86_390_000 <= client.pttl(key) <= 86_400_000, key
        pending = keys.user(viewer).pending_orders
        expiries = client.zrange(pending, 0, -1, withscores=True)
        assert [order_id for order_id, _ in expiries] == [first["order_id"], second["order_id"]]
        # The set lives as long as its latest order, to the millisecond.
        assert client.pexpiretime(pending) == int(expiries[-1][1])


def test_a_provider_this_server_is_not_configured_for_answers_503_and_writes_nothing(
    api: Api, engine: Engine, key_prefix: str, viewer: str
) -> None:
    keys = KeySchema(key_prefix)
    refused = api.http.post(
        "/v1/purchases", json={"package_id": "us_550", "provider": "stripe"}, headers=api.auth(viewer)
    )
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "provider_unavailable" and "'stripe'" in error["message"], error
    unknown = api.http.post(
        "/v1/purchases", json={"package_id": "us_550", "provider": "paypal"}, headers=api.auth(viewer)
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_request"
    with engine_client(engine.url) as client:
        assert client.zcard(keys.user(viewer).pending_orders) == 0
    sandbox = api.order(viewer)
    assert sandbox["provider"] == "sandbox" and sandbox["state"] == "pending"
    # Each provider's own routes say so in the same words, naming the settings that set it up.
    for path, provider, setting in (
        ("/v1/payments/stripe/webhook", "stripe", "GIFTING_STRIPE_SECRET_KEY"),
        ("/v1/purchases/apple", "apple", "GIFTING_APPLE_BUNDLE_ID"),
        ("/v1/payments/apple/notifications", "apple", "GIFTING_APPLE_ROOT_CERTS"),
        ("/v1/purchases/google", "google", "GIFTING_GOOGLE_PACKAGE_NAME"),
        ("/v1/payments/google/notifications", "google", "GIFTING_GOOGLE_PUSH_AUDIENCE"),
    ):
        reply = api.http.post(path, json={}, headers=api.auth(viewer))
        assert reply.status_code == 503, (path, reply.text)
        message = reply.json()["error"]["message"]
        assert message.startswith(f"payment provider {provider!r} is not configured on this server (set ")
        assert setting in message, message


# What a server imports for a provider only once it is configured for it.
PROVIDER_SDKS = ("stripe", "appstoreserverlibrary", "googleapiclient", "google.oauth2", "httplib2")
UNCONFIGURED_PROVIDERS = """
import sys
from server.app import checkouts
from server.domain.catalog import Catalog
from server.providers import app_store, google_play
from server.settings import Settings

settings = Settings.from_env({"GIFTING_DEMO": "1"})
catalog = Catalog.load_default()
assert sorted(checkouts(settings)) == ["sandbox"]
assert app_store(settings, catalog) is None and google_play(settings, catalog) is None
print(" ".join(name for name in sys.argv[1:] if name in sys.modules))
"""


def test_a_server_not_configured_for_a_provider_does_not_load_its_sdk() -> None:
    """The app and its routes, built for no provider, leave the providers' SDKs unimported:
    loading them took about a fifth of every server's start."""
    done = subprocess.run(
        [sys.executable, "-c", UNCONFIGURED_PROVIDERS, *PROVIDER_SDKS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"imported without being configured: {done.stdout}"


def test_an_order_opened_with_one_provider_is_not_paid_through_another(
    api: Api, engine: Engine, key_prefix: str, viewer: str
) -> None:
    """Two providers cannot both pay one order: the one it was not opened with is refused, and its
    attempt leaves nothing behind: the order keeps its lifetime and the payment id stays free."""
    keys = KeySchema(key_prefix)
    order = api.order(viewer)
    owner_key, order_key = order_keys(keys, viewer, order["order_id"])
    payment = unique("pay_")
    with engine_client(engine.url) as client:
        # As an order opened through Stripe is stored.
        client.hset(order_key, "provider", "stripe")
        refused = webhook(api, order, payment)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "provider_mismatch"
        assert client.hget(order_key, "state") == "pending"
        assert client.pttl(order_key) > 0 and client.pttl(owner_key) > 0
        assert client.exists(keys.payment_claim(payment)) == 0
    assert api.coins(viewer) == 0 and api.ledger(viewer) == []
    # The payment id was not spent on the refused attempt.
    other = api.order(viewer)
    assert webhook(api, other, payment).json()["credited"] is True
    assert api.coins(viewer) == 550


def test_without_the_webhook_secret_its_provider_is_off(engine: Engine, key_prefix: str, logs: Path) -> None:
    """Outside demo mode the signed webhook is a provider like any other: switched on by its
    secret. Without it, orders for it and its webhook answer provider_unavailable."""
    env = server_env(engine.url, key_prefix, GIFTING_WEBHOOK_SECRET="", GIFTING_DEMO="0")
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = Api(http)
        buyer = unique("v")
        api.tokens[(buyer, "viewer")] = issue_token(JWT_SECRET, buyer, "viewer")
        refused = http.post("/v1/purchases", json={"package_id": "us_550"}, headers=api.auth(buyer))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "provider_unavailable"
        assert "configured: none" in refused.json()["error"]["message"]
        order = {"order_id": unique("ord_"), "price": {"amount_minor": 999, "currency": "USD"}}
        hook = webhook(api, order, unique("pay_"))
        assert hook.status_code == 503 and hook.json()["error"]["code"] == "provider_unavailable"
        assert api.coins(buyer) == 0
