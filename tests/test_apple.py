"""App Store purchases and notifications, against a real engine and a real server.

The tests are their own certificate authority: a root, an intermediate and a leaf made with
``cryptography``, carrying the extensions Apple's verifier looks for (the leaf's OID
1.2.840.113635.100.6.11.1, the intermediate's 1.2.840.113635.100.6.2.1). The server trusts
that root (GIFTING_APPLE_ROOT_CERTS) and verifies with Apple's own library, as in production;
the tests sign transactions and notifications the way the App Store does (ES256, x5c = leaf,
intermediate, root). Every test ends with the books audit.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from server.audit import BooksChecker, audit_books
from server.keys import KeySchema
from server.settings import Settings, SettingsError
from tests.conftest import Engine
from tests.support import Api, delete_prefix, engine_client_async, running_server, server_env, unique

BUNDLE = "com.example.gifting"
LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
NOTIFICATIONS = "/v1/payments/apple/notifications"
PURCHASES = "/v1/purchases/apple"
DAY = datetime.timedelta(days=1)


@dataclass
class Chain:
    """A root, an intermediate and a leaf; ``sign`` makes a JWS as the App Store does."""

    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    root_key: ec.EllipticCurvePrivateKey
    intermediate_key: ec.EllipticCurvePrivateKey

    def x5c(self) -> list[str]:
        return [
            base64.b64encode(c.public_bytes(Encoding.DER)).decode()
            for c in (self.leaf, self.intermediate, self.root)
        ]

    def sign(self, payload: dict[str, Any], key: ec.EllipticCurvePrivateKey | None = None) -> str:
        return jwt.encode(payload, key or self.leaf_key, algorithm="ES256", headers={"x5c": self.x5c()})


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    oid: x509.ObjectIdentifier | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - 365 * DAY)
        .not_valid_after(not_after or now + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if oid is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_chain(
    root_name: str = "Test Root CA",
    *,
    root_of: Chain | None = None,
    under: Chain | None = None,
    leaf_oid: x509.ObjectIdentifier | None = LEAF_OID,
    intermediate_oid: x509.ObjectIdentifier | None = INTERMEDIATE_OID,
    leaf_not_after: datetime.datetime | None = None,
) -> Chain:
    """A new chain; ``root_of``: under that chain's root; ``under``: a new leaf under that
    chain's root and intermediate."""
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    if under is not None:
        root, root_key = under.root, under.root_key
        intermediate, intermediate_key = under.intermediate, under.intermediate_key
    else:
        if root_of is not None:
            root, root_key = root_of.root, root_of.root_key
        else:
            root_key = ec.generate_private_key(ec.SECP256R1())
            root = _certificate(root_name, root_key, None, ca=True)
        intermediate_key = ec.generate_private_key(ec.SECP256R1())
        intermediate = _certificate(
            "Test Intermediate", intermediate_key, (root_name, root_key), ca=True, oid=intermediate_oid
        )
    leaf = _certificate(
        "Test Signing Leaf",
        leaf_key,
        ("Test Intermediate", intermediate_key),
        ca=False,
        oid=leaf_oid,
        not_before=leaf_not_after - 30 * DAY if leaf_not_after else None,
        not_after=leaf_not_after,
    )
    return Chain(root, intermediate, leaf, leaf_key, root_key, intermediate_key)


def now_ms() -> int:
    return int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)


def transaction(transaction_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A consumable's transaction as the App Store signs it (JWSTransactionDecodedPayload)."""
    payload: dict[str, Any] = {
        "transactionId": transaction_id or str(uuid.uuid4().int % 10**16),
        "originalTransactionId": "1",
        "bundleId": BUNDLE,
        "productId": "com.example.coins.550",
        "purchaseDate": now_ms(),
        "quantity": 1,
        "type": "Consumable",
        "inAppOwnershipType": "PURCHASED",
        "signedDate": now_ms(),
        "environment": "Sandbox",
        "storefront": "USA",
        "currency": "USD",
        "price": 9990,
    }
    payload["originalTransactionId"] = payload["transactionId"]
    payload.update(overrides)
    return payload


@dataclass
class Store:
    """A server with the App Store configured (Sandbox), trusting ``chain``'s root."""

    api: Api
    chain: Chain
    prefix: str
    url: str
    seen: set[str] = field(default_factory=set)

    def submit(self, user_id: str, signed: str) -> httpx.Response:
        return self.api.http.post(
            PURCHASES, json={"signed_transaction": signed}, headers=self.api.auth(user_id)
        )

    def buy(self, user_id: str, **overrides: Any) -> dict[str, Any]:
        payload = transaction(**overrides)
        reply = self.submit(user_id, self.chain.sign(payload))
        assert reply.status_code == 200, reply.text
        assert reply.json()["credited"] is True
        return payload

    def notify(
        self, kind: str, signed_transaction: str | None = None, notification_id: str | None = None
    ) -> httpx.Response:
        data: dict[str, Any] = {"bundleId": BUNDLE, "environment": "Sandbox", "appAppleId": 1}
        if signed_transaction is not None:
            data["signedTransactionInfo"] = signed_transaction
        body = {
            "notificationType": kind,
            "notificationUUID": notification_id or str(uuid.uuid4()),
            "data": data,
            "version": "2.0",
            "signedDate": now_ms(),
        }
        return self.api.http.post(NOTIFICATIONS, json={"signedPayload": self.chain.sign(body)})

    def assert_books_balance(self) -> None:
        async def run() -> None:
            async with engine_client_async(self.url) as client:
                result = await audit_books(client, KeySchema(self.prefix), Fraction(1, 2))
            assert result.ok, result.report()

        asyncio.run(run())


@pytest.fixture(scope="module")
def chain() -> Chain:
    return make_chain()


@pytest.fixture(scope="module")
def store(
    engine: Engine, logs: Path, chain: Chain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("apple") / "root.pem"
    root.write_bytes(chain.root.public_bytes(Encoding.PEM))
    prefix = f"{unique('apple')}:"
    env = server_env(
        engine.url,
        prefix,
        GIFTING_APPLE_BUNDLE_ID=BUNDLE,
        GIFTING_APPLE_ENVIRONMENT="Sandbox",
        GIFTING_APPLE_ROOT_CERTS=str(root),
    )
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
            yield Store(Api(http), chain, prefix, engine.url)
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@pytest.fixture
def apple(store: Store) -> Iterator[Store]:
    yield store
    store.assert_books_balance()


def test_a_verified_transaction_is_credited_exactly_once(apple: Store) -> None:
    api = apple.api
    buyer = unique("v")
    payload = transaction()
    signed = apple.chain.sign(payload)
    first = apple.submit(buyer, signed)
    assert first.status_code == 200, first.text
    body = first.json()
    order_id = f"apple_{payload['transactionId']}"
    assert (body["credited"], body["order_id"], body["transaction_id"]) == (
        True,
        order_id,
        payload["transactionId"],
    )
    assert (body["coins"], body["state"], body["provider"], body["package_id"]) == (
        550,
        "paid",
        "apple",
        "us_550",
    )
    assert body["price"] == {"amount_minor": 999, "currency": "USD"}  # the price book's, not Apple's
    assert body["payment_id"] == f"apple-{payload['transactionId']}"
    for _ in range(2):
        again = apple.submit(buyer, signed)
        assert again.status_code == 200, again.text
        assert (again.json()["credited"], again.json()["order_id"]) == (False, order_id)
    assert api.coins(buyer) == 550
    [entry] = api.ledger(buyer)
    assert (entry["kind"], entry["delta"], entry["balance"], entry["ref"]) == ("purchase", 550, 550, order_id)
    order = api.http.get(f"/v1/purchases/{order_id}", headers=api.auth(buyer)).json()
    assert (order["state"], order["provider"]) == ("paid", "apple")


def test_a_quantity_buys_that_many_packages(apple: Store) -> None:
    buyer = unique("v")
    apple.buy(buyer, productId="com.example.coins.100", quantity=3)
    assert apple.api.coins(buyer) == 300
    [entry] = apple.api.ledger(buyer)
    assert (entry["kind"], entry["delta"]) == ("purchase", 300)


def test_a_transaction_credited_to_one_user_is_refused_to_another(apple: Store) -> None:
    api = apple.api
    owner, other = unique("v"), unique("v")
    payload = apple.buy(owner)
    reply = apple.submit(other, apple.chain.sign(payload))
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == "transaction_claimed"
    assert (api.coins(owner), api.coins(other)) == (550, 0)
    assert api.ledger(other) == []
    assert len(api.ledger(owner)) == 1
    order_id = f"apple_{payload['transactionId']}"
    assert api.http.get(f"/v1/purchases/{order_id}", headers=api.auth(other)).status_code == 404


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"bundleId": "com.example.other"}, "wrong_app"),
        ({"environment": "Production"}, "wrong_environment"),
        ({"revocationDate": 1_700_000_000_000, "revocationReason": 0}, "transaction_revoked"),
        ({"productId": "com.example.coins.999"}, "unknown_product"),
        ({"type": "Non-Consumable"}, "unknown_product"),
        ({"quantity": 11}, "invalid_request"),
        ({"transactionId": "12{34}"}, "invalid_request"),
    ],
)
def test_a_transaction_that_buys_nothing_here_is_refused(
    apple: Store, overrides: dict[str, Any], code: str
) -> None:
    buyer = unique("v")
    reply = apple.submit(buyer, apple.chain.sign(transaction(**overrides)))
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == code
    assert apple.api.coins(buyer) == 0
    assert apple.api.ledger(buyer) == []


def _tamper(signed: str, **changes: Any) -> str:
    """``signed`` with its payload changed and its signature kept."""
    header, payload, signature = signed.split(".")
    claims = jwt.decode(signed, options={"verify_signature": False})
    claims.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert body != payload
    return f"{header}.{body}.{signature}"


def test_forged_or_broken_signatures_are_refused(apple: Store) -> None:
    buyer = unique("v")
    payload = transaction()
    genuine = apple.chain.sign(payload)
    stranger = make_chain("Another Root CA")  # a whole chain of its own, under another root
    no_oid = make_chain(under=apple.chain, leaf_oid=None)
    expired = make_chain(under=apple.chain, leaf_not_after=datetime.datetime.now(datetime.UTC) - 2 * DAY)
    # Both fail for the one reason they are here: the same leaf with the OID, in date, verifies.
    assert apple.submit(unique("v"), make_chain(under=apple.chain).sign(transaction())).status_code == 200
    forged = [
        # signed by a key the leaf does not certify
        apple.chain.sign(payload, key=ec.generate_private_key(ec.SECP256R1())),
        stranger.sign(payload),
        # the trusted root and intermediate, a leaf from another intermediate
        jwt.encode(
            payload,
            stranger.leaf_key,
            algorithm="ES256",
            headers={"x5c": [stranger.x5c()[0], *apple.chain.x5c()[1:]]},
        ),
        no_oid.sign(payload),
        # the leaf had expired when the transaction was signed
        expired.sign(payload),
        _tamper(genuine, quantity=10),
        _tamper(genuine, productId="com.example.coins.5450"),
        genuine[: len(genuine) // 2],
        genuine.rsplit(".", 1)[0],
        "not a jws",
        jwt.encode(
            payload,
            "a-shared-secret-of-thirty-two-bytes!",
            algorithm="HS256",
            headers={"x5c": apple.chain.x5c()},
        ),
    ]
    for signed in forged:
        reply = apple.submit(buyer, signed)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "bad_signature"
    # Apple's own chains are three certificates long.
    short = jwt.encode(
        payload, apple.chain.leaf_key, algorithm="ES256", headers={"x5c": apple.chain.x5c()[:2]}
    )
    assert apple.submit(buyer, short).json()["error"]["code"] == "bad_signature"
    assert apple.api.coins(buyer) == 0
    assert apple.api.ledger(buyer) == []
    # The genuine transaction is still good: nothing above claimed it.
    assert apple.submit(buyer, genuine).json()["credited"] is True
    assert apple.api.coins(buyer) == 550
    # The chain is checked at the date Apple signed the data (its signedDate), as Apple's
    # library does with online checks off: signed while the leaf was valid, it still verifies.
    signed_then = now_ms() - 5 * 86_400_000
    earlier = expired.sign(transaction(signedDate=signed_then, purchaseDate=signed_then))
    assert apple.submit(buyer, earlier).json()["credited"] is True
    assert apple.api.coins(buyer) == 1100


def test_an_intermediate_without_apples_oid_is_refused(apple: Store) -> None:
    """A chain under the trusted root whose intermediate lacks 1.2.840.113635.100.6.2.1."""
    buyer = unique("v")
    without = make_chain(root_of=apple.chain, intermediate_oid=None)
    reply = apple.submit(buyer, without.sign(transaction()))
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_signature", reply.text
    assert apple.api.coins(buyer) == 0
    # The same kind of chain with the OID on its intermediate verifies.
    assert apple.submit(buyer, make_chain(root_of=apple.chain).sign(transaction())).json()["credited"] is True
    assert apple.api.coins(buyer) == 550


def test_concurrent_submissions_credit_once_to_one_account(apple: Store) -> None:
    api = apple.api
    payload = transaction()
    signed = apple.chain.sign(payload)
    buyers = [unique("v") for _ in range(4)]
    headers = {buyer: api.auth(buyer) for buyer in buyers}

    async def run() -> list[tuple[str, httpx.Response]]:
        async with httpx.AsyncClient(base_url=str(api.http.base_url), timeout=30) as http:

            async def submit(buyer: str) -> tuple[str, httpx.Response]:
                body = {"signed_transaction": signed}
                return buyer, await http.post(PURCHASES, json=body, headers=headers[buyer])

            return await asyncio.gather(*(submit(buyers[n % 4]) for n in range(24)))

    replies = asyncio.run(run())
    owners = {buyer for buyer, reply in replies if reply.status_code == 200}
    assert len(owners) == 1, [(b, r.status_code, r.text) for b, r in replies]
    [owner] = owners
    assert sum(reply.json()["credited"] for _, reply in replies if reply.status_code == 200) == 1
    for buyer, reply in replies:
        if buyer != owner:
            assert reply.status_code == 409 and reply.json()["error"]["code"] == "transaction_claimed"
    assert [api.coins(buyer) for buyer in buyers] == [550 if buyer == owner else 0 for buyer in buyers]
    assert len(api.ledger(owner)) == 1


def test_a_malformed_body_is_refused(apple: Store) -> None:
    buyer = unique("v")
    headers = apple.api.auth(buyer)
    for body in (
        {},
        {"signed_transaction": ""},
        {"signed_transaction": 7},
        {"signed_transaction": "x", "y": 1},
    ):
        reply = apple.api.http.post(PURCHASES, json=body, headers=headers)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", reply.text
    assert apple.api.http.post(PURCHASES, json={"signed_transaction": "x"}).status_code == 401
    assert apple.api.http.post(NOTIFICATIONS, json={}).json()["error"]["code"] == "invalid_request"
    assert apple.api.coins(buyer) == 0


def test_a_refund_claws_back_once_and_a_replay_changes_nothing(apple: Store) -> None:
    api = apple.api
    buyer = unique("v")
    payload = apple.buy(buyer)
    refunded = apple.chain.sign(
        {**payload, "revocationDate": now_ms(), "revocationReason": 0, "signedDate": now_ms()}
    )
    note_id = str(uuid.uuid4())
    reply = apple.notify("REFUND", refunded, note_id)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "handled": True, "clawed_back": True}
    replay = apple.notify("REFUND", refunded, note_id)
    assert replay.json() == {"received": True, "handled": True, "replayed": True}
    # Apple sending it again under another id takes nothing more either.
    again = apple.notify("REFUND", refunded)
    assert again.json() == {"received": True, "handled": True, "clawed_back": False}
    assert api.coins(buyer) == 0
    kinds = [(e["kind"], e["delta"], e["balance"]) for e in api.ledger(buyer)]
    assert kinds == [("clawback", -550, 0), ("purchase", 550, 550)]
    order = api.http.get(f"/v1/purchases/apple_{payload['transactionId']}", headers=api.auth(buyer)).json()
    assert order["state"] == "refunded"
    # A refunded transaction submitted again is refused, as revoked.
    resubmitted = apple.submit(buyer, refunded)
    assert resubmitted.status_code == 422 and resubmitted.json()["error"]["code"] == "transaction_revoked"
    assert api.coins(buyer) == 0


def test_a_refund_after_the_coins_were_spent_reverses_the_gifts_and_its_reversal_restores_them(
    apple: Store,
) -> None:
    api = apple.api
    buyer, creator = unique("v"), unique("c")
    room_id = api.open_room(creator)
    payload = apple.buy(buyer)  # 550 coins
    assert api.gift(buyer, room_id, "corgi").status_code == 200  # 299 coins -> 149 diamonds
    assert api.coins(buyer) == 251
    signed = apple.chain.sign({**payload, "revocationDate": now_ms(), "signedDate": now_ms()})
    assert apple.notify("REFUND", signed).json()["clawed_back"] is True
    assert api.coins(buyer) == -299
    earnings = api.earnings(creator)
    assert (earnings["pending"], earnings["reversed"], earnings["lifetime"]) == (0, 149, 149)
    # Apple reversed the refund: the coins come back once, the gifts stay reversed.
    reversal_id = str(uuid.uuid4())
    restored = apple.notify("REFUND_REVERSED", apple.chain.sign(payload), reversal_id)
    assert restored.status_code == 200, restored.text
    assert restored.json() == {"received": True, "handled": True, "restored": True}
    assert apple.notify("REFUND_REVERSED", apple.chain.sign(payload), reversal_id).json()["replayed"] is True
    assert apple.notify("REFUND_REVERSED", apple.chain.sign(payload)).json()["restored"] is False
    assert api.coins(buyer) == 251
    entries = [(e["kind"], e["delta"], e["balance"]) for e in api.ledger(buyer)]
    assert entries == [
        ("restore", 550, 251),
        ("clawback", -550, -299),
        ("gift", -299, 251),
        ("purchase", 550, 550),
    ]
    [restore] = [e for e in api.ledger(buyer) if e["kind"] == "restore"]
    assert restore["ref"] == f"apple_{payload['transactionId']}"
    order = api.http.get(f"/v1/purchases/apple_{payload['transactionId']}", headers=api.auth(buyer)).json()
    assert order["state"] == "paid" and "restored_ms" in order
    earnings = api.earnings(creator)
    assert (earnings["pending"], earnings["reversed"]) == (0, 149)


def test_a_reversal_with_no_refund_restores_nothing(apple: Store) -> None:
    buyer = unique("v")
    payload = apple.buy(buyer)
    reply = apple.notify("REFUND_REVERSED", apple.chain.sign(payload))
    assert reply.json() == {"received": True, "handled": True, "restored": False}
    never = apple.notify("REFUND_REVERSED", apple.chain.sign(transaction()))
    assert never.json() == {"received": True, "handled": True, "restored": False}
    assert apple.api.coins(buyer) == 550
    assert len(apple.api.ledger(buyer)) == 1


def test_a_transaction_refunded_before_it_was_submitted_is_refused(apple: Store) -> None:
    """The copy signed before the refund carries no revocationDate: the refund notification
    is what tells, and it is remembered until Apple reverses the refund."""
    buyer = unique("v")
    payload = transaction()
    before_refund = apple.chain.sign(payload)
    refund = apple.notify("REFUND", apple.chain.sign({**payload, "revocationDate": now_ms()}))
    assert refund.json() == {"received": True, "handled": True, "clawed_back": False}
    refused = apple.submit(buyer, before_refund)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "transaction_revoked"
    assert apple.api.coins(buyer) == 0 and apple.api.ledger(buyer) == []
    reversed_ = apple.notify("REFUND_REVERSED", apple.chain.sign(payload))
    assert reversed_.json() == {"received": True, "handled": True, "restored": False}
    assert apple.submit(buyer, before_refund).json()["credited"] is True
    assert apple.api.coins(buyer) == 550


def test_other_notifications_are_acknowledged(apple: Store) -> None:
    buyer = unique("v")
    payload = apple.buy(buyer)
    assert apple.notify("TEST").json() == {"received": True, "handled": True}
    consumption = apple.notify("CONSUMPTION_REQUEST", apple.chain.sign(payload))
    assert consumption.json() == {"received": True, "handled": True}
    assert apple.notify("REFUND_DECLINED", apple.chain.sign(payload)).json() == {
        "received": True,
        "handled": False,
    }
    assert apple.api.coins(buyer) == 550


def test_a_forged_notification_is_refused_and_changes_nothing(apple: Store) -> None:
    buyer = unique("v")
    payload = apple.buy(buyer)
    refunded = apple.chain.sign({**payload, "revocationDate": now_ms()})
    body: dict[str, Any] = {
        "notificationType": "REFUND",
        "notificationUUID": str(uuid.uuid4()),
        "data": {"bundleId": BUNDLE, "environment": "Sandbox", "signedTransactionInfo": refunded},
        "signedDate": now_ms(),
    }
    stranger = make_chain("Another Root CA")
    reply = apple.api.http.post(NOTIFICATIONS, json={"signedPayload": stranger.sign(body)})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_signature"
    # A genuine notification carrying a forged transaction.
    inner = apple.notify("REFUND", stranger.sign({**payload, "revocationDate": now_ms()}))
    assert inner.status_code == 400 and inner.json()["error"]["code"] == "bad_signature"
    other_app = {**body, "data": {**body["data"], "bundleId": "com.example.other"}}
    wrong = apple.api.http.post(NOTIFICATIONS, json={"signedPayload": apple.chain.sign(other_app)})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "wrong_app"
    assert apple.api.coins(buyer) == 550


def test_an_unconfigured_server_answers_provider_unavailable(api: Api, viewer: str) -> None:
    chain = make_chain()
    submitted = api.http.post(
        PURCHASES, json={"signed_transaction": chain.sign(transaction())}, headers=api.auth(viewer)
    )
    notified = api.http.post(NOTIFICATIONS, json={"signedPayload": chain.sign({"notificationType": "TEST"})})
    for reply in (submitted, notified):
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["code"] == "provider_unavailable"
    assert api.coins(viewer) == 0


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    root = tmp_path / "root.der"
    root.write_bytes(make_chain().root.public_bytes(Encoding.DER))
    env = {"GIFTING_JWT_SECRET": "x" * 64, "GIFTING_WEBHOOK_SECRET": "y" * 64, "GIFTING_DEMO": "1"}
    env.update({k: v.replace("ROOT", str(root)) for k, v in values.items()})
    return env


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"GIFTING_APPLE_BUNDLE_ID": BUNDLE}, "GIFTING_APPLE_ROOT_CERTS is missing"),
        ({"GIFTING_APPLE_ROOT_CERTS": "ROOT"}, "GIFTING_APPLE_BUNDLE_ID is missing"),
        ({"GIFTING_APPLE_APP_ID": "123"}, "half configured"),
        ({"GIFTING_APPLE_BUNDLE_ID": BUNDLE, "GIFTING_APPLE_ROOT_CERTS": "ROOT"}, "GIFTING_APPLE_APP_ID"),
        (
            {
                "GIFTING_APPLE_BUNDLE_ID": BUNDLE,
                "GIFTING_APPLE_ROOT_CERTS": "ROOT",
                "GIFTING_APPLE_ENVIRONMENT": "LocalTesting",
            },
            "must be one of Production, Sandbox",
        ),
        (
            {
                "GIFTING_APPLE_BUNDLE_ID": "com.other",
                "GIFTING_APPLE_ROOT_CERTS": "ROOT",
                "GIFTING_APPLE_APP_ID": "1",
            },
            "sells no App Store products",
        ),
        (
            {
                "GIFTING_APPLE_BUNDLE_ID": BUNDLE,
                "GIFTING_APPLE_ROOT_CERTS": "/nonexistent.cer",
                "GIFTING_APPLE_APP_ID": "1",
            },
            "no certificate file",
        ),
        (
            {
                "GIFTING_APPLE_BUNDLE_ID": BUNDLE,
                "GIFTING_APPLE_ROOT_CERTS": "ROOT",
                "GIFTING_APPLE_APP_ID": "abc",
            },
            "numeric Apple ID",
        ),
    ],
)
def test_half_a_configuration_refuses_to_start(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(_env(tmp_path, **values))


def test_a_full_configuration_turns_the_app_store_on(tmp_path: Path) -> None:
    production = Settings.from_env(
        _env(
            tmp_path,
            GIFTING_APPLE_BUNDLE_ID=BUNDLE,
            GIFTING_APPLE_ROOT_CERTS="ROOT",
            GIFTING_APPLE_APP_ID="42",
        )
    )
    assert (production.apple_enabled, production.apple_environment, production.apple_app_id) == (
        True,
        "Production",
        42,
    )
    assert Settings.from_env(_env(tmp_path)).apple_enabled is False


def _ledger(*entries: dict[str, object]) -> list[tuple[str, dict[str, str]]]:
    return [(f"{n + 1}-0", {k: str(v) for k, v in fields.items()}) for n, fields in enumerate(entries)]


def _audit(entries: list[tuple[str, dict[str, str]]], coins: int) -> list[str]:
    checker = BooksChecker(Fraction(1, 2))
    checker.coin_entries("alice", entries)
    checker.wallet("alice", {"coins": str(coins)})
    return [v.invariant + ": " + v.message for v in checker.finish().violations]


BOUGHT = {"kind": "purchase", "delta": 550, "balance": 550, "ref": "o1"}
TAKEN = {"kind": "clawback", "delta": -550, "balance": 0, "ref": "o1", "reason": "refunded"}
PUT_BACK = {"kind": "restore", "delta": 550, "balance": 550, "ref": "o1"}


def test_the_audit_takes_a_restore_after_a_clawback_of_the_same_coins() -> None:
    assert _audit(_ledger(BOUGHT, TAKEN, PUT_BACK), 550) == []
    # Refunded again after the reversal, and reversed again: each step follows the other.
    again = _ledger(BOUGHT, TAKEN, PUT_BACK, TAKEN | {"balance": 0}, PUT_BACK)
    assert _audit(again, 550) == []


@pytest.mark.parametrize(
    ("entries", "coins", "found"),
    [
        # a restore with no clawback before it
        (_ledger(BOUGHT, PUT_BACK | {"balance": 1100}), 1100, "no clawback to restore"),
        # restored twice
        (_ledger(BOUGHT, TAKEN, PUT_BACK, PUT_BACK | {"balance": 1100}), 1100, "no clawback to restore"),
        # other coins than the order's
        (_ledger(BOUGHT, TAKEN, PUT_BACK | {"delta": 600, "balance": 600}), 600, "puts back 600 coins"),
        # clawed back twice with no restore between
        (_ledger(BOUGHT, TAKEN, TAKEN | {"balance": -550}), -550, "clawed back twice"),
    ],
)
def test_the_audit_refuses_a_restore_out_of_turn(
    entries: list[tuple[str, dict[str, str]]], coins: int, found: str
) -> None:
    violations = _audit(entries, coins)
    assert any(found in v for v in violations), violations
