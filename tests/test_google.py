"""Google Play purchases and notifications, against a real engine and a real server.

Google is played by a stand-in HTTP server the tests start (stdlib ``http.server``, in a
thread), speaking what Google documents: the OAuth token endpoint the service account's key
file names as its ``token_uri`` (it checks the signed JWT assertion against the key file's
public key), the Android Publisher v3 ``purchases.products`` get and consume paths as
Google's client builds them from its discovery document (each call checked for the token it
issued), and a certificates endpoint in the x509 PEM form of Google's
``oauth2/v1/certs``. The tests sign the Pub/Sub push tokens with a key of their own whose
certificate that endpoint serves. The server uses Google's own clients throughout. Every
test ends with the books audit.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from server.audit import audit_books
from server.keys import KeySchema
from server.settings import Settings, SettingsError
from tests.conftest import Engine
from tests.support import Api, delete_prefix, engine_client_async, running_server, server_env, unique

PACKAGE = "com.example.gifting"
AUDIENCE = "https://gifting.example/v1/payments/google/notifications"
PUSH_ACCOUNT = "rtdn-push@example-project.iam.gserviceaccount.com"
PLAY_ACCOUNT = "play-api@example-project.iam.gserviceaccount.com"
PURCHASES = "/v1/purchases/google"
NOTIFICATIONS = "/v1/payments/google/notifications"
PRODUCTS = re.compile(
    r"^/androidpublisher/v3/applications/(?P<package>[^/]+)/purchases/products/(?P<product>[^/]+)"
    r"/tokens/(?P<token>[^/:?]+)(?P<consume>:consume)?(?:\?.*)?$"
)
ONE_TIME, FULL, PARTIAL = 2, 1, 2
# The audience of a service account's grant assertion, whichever token_uri it is posted to.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _certificate(key: rsa.RSAPrivateKey) -> str:
    """A self-signed x509 certificate of ``key``, in PEM, as Google's certs endpoint serves."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "push-signer")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Google:
    """The stand-in's state: the purchases it knows, what it was asked, how it fails."""

    account_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    push_key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    purchases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    gets: list[tuple[str, str]] = field(default_factory=list)
    consumes: list[str] = field(default_factory=list)  # tokens consumed
    access_tokens: set[str] = field(default_factory=set)
    api_failing: int = 0  # the status every API call answers, if any
    token_down: bool = False
    failing_consumes: int = 0
    certs_fetched: int = 0
    certs_max_age: int | None = None  # Cache-Control: max-age of the certificates, if any
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def key_file(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "example-project",
                    "private_key_id": "key-1",
                    "private_key": _pem(self.account_key),
                    "client_email": PLAY_ACCOUNT,
                    "client_id": "1000",
                    "token_uri": self.token_uri,
                }
            )
        )
        return path

    def reset(self) -> None:
        with self.lock:
            self.api_failing = 0
            self.token_down = False
            self.failing_consumes = 0

    def sell(self, product_id: str = "coins_550", **overrides: Any) -> tuple[str, str]:
        """A purchase Google knows: (its purchase token, its orderId)."""
        token = f"tok.{uuid.uuid4().hex}{uuid.uuid4().hex}-AO_J1"
        order_id = f"GPA.{uuid.uuid4().int % 10**4:04d}-{uuid.uuid4().int % 10**12:012d}"
        purchase: dict[str, Any] = {
            "kind": "androidpublisher#productPurchase",
            "purchaseTimeMillis": str(int(time.time() * 1000)),
            "purchaseState": 0,
            "consumptionState": 0,
            "developerPayload": "",
            "orderId": order_id,
            "acknowledgementState": 0,
            "purchaseToken": token,
            "productId": product_id,
            "regionCode": "US",
        }
        purchase.update(overrides)
        with self.lock:
            self.purchases[(product_id, token)] = purchase
        return token, order_id

    def consumed(self, token: str) -> int:
        with self.lock:
            return self.consumes.count(token)


def _handler(google: Google) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, reason: str) -> None:
            # Google's JSON error body.
            self._answer(
                status,
                {
                    "error": {
                        "code": status,
                        "message": message,
                        "errors": [{"message": message, "domain": "global", "reason": reason}],
                    }
                },
            )

        def do_GET(self) -> None:
            if self.path == "/certs":
                with google.lock:
                    google.certs_fetched += 1
                    max_age = google.certs_max_age
                cache = (
                    {}
                    if max_age is None
                    else {"Cache-Control": f"public, max-age={max_age}, must-revalidate"}
                )
                self._answer(200, {"push-key-1": _certificate(google.push_key)}, cache)
                return
            self._products("GET")

        def do_POST(self) -> None:
            if self.path == "/token":
                self._token()
                return
            self._products("POST")

        def _token(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if google.token_down:
                self._answer(503, {"error": "backend_error"})
                return
            try:
                assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                claims = jwt.decode(
                    form["assertion"][0],
                    google.account_key.public_key(),
                    algorithms=["RS256"],
                    audience=GOOGLE_TOKEN_AUDIENCE,
                )
                assert claims["iss"] == PLAY_ACCOUNT
                assert "https://www.googleapis.com/auth/androidpublisher" in claims["scope"].split()
            except (AssertionError, KeyError, jwt.InvalidTokenError):
                self._answer(400, {"error": "invalid_grant"})
                return
            access = f"ya29.{uuid.uuid4().hex}"
            with google.lock:
                google.access_tokens.add(access)
            self._answer(200, {"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

        def _products(self, method: str) -> None:
            found = PRODUCTS.match(self.path)
            if found is None or (method == "POST") != bool(found["consume"]):
                self._error(404, "Not found", "notFound")
                return
            authorization = self.headers.get("Authorization", "")
            with google.lock:
                known = authorization.removeprefix("Bearer ") in google.access_tokens
            if not known:
                self._error(401, "Request had invalid authentication credentials.", "unauthorized")
                return
            if google.api_failing:
                self._error(google.api_failing, "The service is currently unavailable.", "backendError")
                return
            key = (found["product"], found["token"])
            with google.lock:
                purchase = google.purchases.get(key) if found["package"] == PACKAGE else None
                if method == "GET":
                    google.gets.append(key)
            if purchase is None:
                self._error(
                    400, "The purchase token does not match the product ID.", "purchaseTokenDoesNotMatch"
                )
                return
            if method == "GET":
                self._answer(200, purchase)
                return
            with google.lock:
                if google.failing_consumes:
                    google.failing_consumes -= 1
                    failing = True
                else:
                    failing = False
                    google.consumes.append(found["token"])
                    purchase["consumptionState"] = 1
                    purchase["acknowledgementState"] = 1
            if failing:
                self._error(500, "Internal error encountered.", "backendError")
                return
            self._answer(204)

    return Handler


def push_token(
    key: rsa.RSAPrivateKey,
    *,
    kid: str = "push-key-1",
    lifetime_s: int = 3600,
    algorithm: str = "RS256",
    **claims: Any,
) -> str:
    """A Pub/Sub push's OIDC token as Google signs it."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "1000",
        "email": PUSH_ACCOUNT,
        "email_verified": True,
        "sub": "1000",
        "iat": now - 10 if lifetime_s > 0 else now - 7200,
        "exp": now + lifetime_s,
    }
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


@dataclass
class Play:
    """A server with Google Play configured against the stand-in."""

    api: Api
    google: Google
    prefix: str
    url: str

    def submit(self, user_id: str, token: str, product_id: str = "coins_550") -> httpx.Response:
        return self.api.http.post(
            PURCHASES,
            json={"product_id": product_id, "purchase_token": token},
            headers=self.api.auth(user_id),
        )

    def buy(self, user_id: str, product_id: str = "coins_550", **overrides: Any) -> tuple[str, str]:
        token, order_id = self.google.sell(product_id, **overrides)
        reply = self.submit(user_id, token, product_id)
        assert reply.status_code == 200, reply.text
        assert (reply.json()["credited"], reply.json()["consumed"]) == (True, True)
        return token, order_id

    def notify(
        self,
        notification: dict[str, Any],
        message_id: str | None = None,
        bearer: str | None = None,
        package: str = PACKAGE,
    ) -> httpx.Response:
        developer = {"version": "1.0", "packageName": package, "eventTimeMillis": "1700000000000"}
        data = base64.b64encode(json.dumps({**developer, **notification}).encode()).decode()
        body = {
            "message": {
                "data": data,
                "messageId": message_id or str(uuid.uuid4().int % 10**16),
                "publishTime": "2026-11-30T02:00:00.000Z",
            },
            "subscription": "projects/example-project/subscriptions/play-rtdn",
        }
        bearer = push_token(self.google.push_key) if bearer is None else bearer
        return self.api.http.post(NOTIFICATIONS, json=body, headers={"authorization": f"Bearer {bearer}"})

    def void(self, token: str, order_id: str, refund_type: int = FULL, **kw: Any) -> httpx.Response:
        voided = {
            "purchaseToken": token,
            "orderId": order_id,
            "productType": ONE_TIME,
            "refundType": refund_type,
        }
        return self.notify({"voidedPurchaseNotification": voided}, **kw)

    def order(self, user_id: str, token: str) -> dict[str, Any]:
        reply = self.api.http.get(f"/v1/purchases/{order_of(token)}", headers=self.api.auth(user_id))
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def assert_books_balance(self) -> None:
        async def run() -> None:
            async with engine_client_async(self.url) as client:
                result = await audit_books(client, KeySchema(self.prefix), Fraction(1, 2))
            assert result.ok, result.report()

        asyncio.run(run())


def order_of(token: str) -> str:
    import hashlib

    return "google_" + hashlib.sha256(token.encode()).hexdigest()[:48]


@contextmanager
def standing_in(state: Google) -> Iterator[Google]:
    """The stand-in serving ``state``, in a thread, on a free port."""
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{http.server_address[1]}"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def google() -> Iterator[Google]:
    with standing_in(Google()) as state:
        yield state


def google_env(google: Google, key_file: Path) -> dict[str, str]:
    return {
        "GIFTING_GOOGLE_PACKAGE_NAME": PACKAGE,
        "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE": str(key_file),
        "GIFTING_GOOGLE_API_BASE": f"{google.base_url}/",
        "GIFTING_GOOGLE_PUSH_AUDIENCE": AUDIENCE,
        "GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
        "GIFTING_GOOGLE_CERTS_URL": f"{google.base_url}/certs",
    }


@pytest.fixture(scope="module")
def configured(
    engine: Engine, logs: Path, google: Google, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Play]:
    key_file = google.key_file(tmp_path_factory.mktemp("google") / "service-account.json")
    prefix = f"{unique('google')}:"
    env = server_env(engine.url, prefix, **google_env(google, key_file))
    try:
        with (
            running_server(env, logs) as process,
            httpx.Client(base_url=process.base_url, timeout=30) as http,
        ):
            yield Play(Api(http), google, prefix, engine.url)
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@pytest.fixture
def play(configured: Play) -> Iterator[Play]:
    configured.google.reset()
    yield configured
    configured.google.reset()
    configured.assert_books_balance()


def test_a_purchase_is_credited_exactly_once_and_consumed_once(play: Play) -> None:
    api = play.api
    buyer = unique("v")
    token, google_order = play.google.sell()
    first = play.submit(buyer, token)
    assert first.status_code == 200, first.text
    body = first.json()
    order_id = order_of(token)
    assert (body["credited"], body["consumed"], body["order_id"], body["google_order_id"]) == (
        True,
        True,
        order_id,
        google_order,
    )
    assert (body["coins"], body["state"], body["provider"], body["package_id"]) == (
        550,
        "paid",
        "google",
        "us_550",
    )
    assert body["price"] == {"amount_minor": 999, "currency": "USD"}  # the price book's
    assert body["payment_id"] == f"google-{google_order}"
    for _ in range(2):
        again = play.submit(buyer, token)
        assert again.status_code == 200, again.text
        assert (again.json()["credited"], again.json()["consumed"], again.json()["order_id"]) == (
            False,
            True,
            order_id,
        )
    assert play.google.consumed(token) == 1
    assert api.coins(buyer) == 550
    [entry] = api.ledger(buyer)
    assert (entry["kind"], entry["delta"], entry["balance"], entry["ref"]) == ("purchase", 550, 550, order_id)
    assert (play.order(buyer, token)["state"], play.order(buyer, token)["provider"]) == ("paid", "google")


def test_a_quantity_buys_that_many_packages(play: Play) -> None:
    buyer = unique("v")
    play.buy(buyer, "coins_100", quantity=3)
    assert play.api.coins(buyer) == 300
    [entry] = play.api.ledger(buyer)
    assert (entry["kind"], entry["delta"]) == ("purchase", 300)


def test_a_purchase_credited_to_one_user_is_refused_to_another(play: Play) -> None:
    api = play.api
    owner, other = unique("v"), unique("v")
    token, _ = play.buy(owner)
    reply = play.submit(other, token)
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == "transaction_claimed"
    assert (api.coins(owner), api.coins(other)) == (550, 0)
    assert api.ledger(other) == []
    assert len(api.ledger(owner)) == 1
    assert api.http.get(f"/v1/purchases/{order_of(token)}", headers=api.auth(other)).status_code == 404
    assert play.google.consumed(token) == 1


@pytest.mark.parametrize(("state", "code"), [(2, "purchase_pending"), (1, "purchase_canceled")])
def test_a_purchase_not_paid_is_refused(play: Play, state: int, code: str) -> None:
    buyer = unique("v")
    token, _ = play.google.sell(purchaseState=state)
    reply = play.submit(buyer, token)
    assert reply.status_code == 409, reply.text
    assert reply.json()["error"]["code"] == code
    assert play.api.coins(buyer) == 0 and play.api.ledger(buyer) == []
    assert play.google.consumed(token) == 0
    if state == 2:
        # Paid later: the same token credits then.
        with play.google.lock:
            play.google.purchases[("coins_550", token)]["purchaseState"] = 0
        assert play.submit(buyer, token).json()["credited"] is True
        assert play.api.coins(buyer) == 550


def test_an_unknown_product_or_token_is_refused(play: Play) -> None:
    buyer = unique("v")
    token, _ = play.google.sell("coins_999")  # Google sells it; the catalog does not
    reply = play.submit(buyer, token, "coins_999")
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "unknown_product", reply.text
    with play.google.lock:
        assert ("coins_999", token) not in play.google.gets  # refused before asking Google
    unknown = play.submit(buyer, "tok.never-sold")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_purchase_token"
    # A genuine token under another product of the catalog: Google knows no such purchase.
    sold, _ = play.google.sell("coins_100")
    mismatched = play.submit(buyer, sold, "coins_5450")
    assert mismatched.status_code == 422 and mismatched.json()["error"]["code"] == "unknown_purchase_token"
    assert play.api.coins(buyer) == 0 and play.api.ledger(buyer) == []


@pytest.mark.parametrize("status", [503, 500, 429, 403, 401])
def test_google_failing_answers_provider_error_and_credits_nothing(play: Play, status: int) -> None:
    """Down, overloaded, or refusing the service account (a configuration to fix)."""
    buyer = unique("v")
    token, _ = play.google.sell()
    play.google.api_failing = status
    reply = play.submit(buyer, token)
    assert reply.status_code == 502 and reply.json()["error"]["code"] == "provider_error", reply.text
    assert play.api.coins(buyer) == 0 and play.api.ledger(buyer) == []
    play.google.api_failing = 0
    assert play.submit(buyer, token).json()["credited"] is True
    assert play.api.coins(buyer) == 550


@contextmanager
def own_server(engine: Engine, logs: Path, key_dir: Path, **overrides: str) -> Iterator[Play]:
    """A server of its own (no access token or certificate cached yet) on a stand-in of its own."""
    with standing_in(Google()) as state:
        prefix = f"{unique('google')}:"
        settings = google_env(state, state.key_file(key_dir / "key.json"))
        env = server_env(engine.url, prefix, **{**settings, **overrides})
        try:
            with (
                running_server(env, logs) as process,
                httpx.Client(base_url=process.base_url, timeout=30) as client,
            ):
                own = Play(Api(client), state, prefix, engine.url)
                yield own
                own.assert_books_balance()
        finally:
            if not engine.owned:
                delete_prefix(engine.url, prefix)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_token_endpoint_down_answers_provider_error(tmp_path: Path, engine: Engine, logs: Path) -> None:
    with own_server(engine, logs, tmp_path) as own:
        buyer = unique("v")
        token, _ = own.google.sell()
        own.google.token_down = True
        reply = own.submit(buyer, token)
        assert reply.status_code == 502 and reply.json()["error"]["code"] == "provider_error", reply.text
        assert own.api.coins(buyer) == 0
        own.google.token_down = False
        assert own.submit(buyer, token).json()["credited"] is True
        assert own.api.coins(buyer) == 550


def test_google_unreachable_answers_provider_error_and_changes_nothing(
    tmp_path: Path, engine: Engine, logs: Path
) -> None:
    """The API and the certificates at a port nobody listens on: a purchase cannot be
    checked, a push cannot be verified (Pub/Sub pushes it again); both 502."""
    nowhere = f"http://127.0.0.1:{closed_port()}"
    overrides = {"GIFTING_GOOGLE_API_BASE": f"{nowhere}/", "GIFTING_GOOGLE_CERTS_URL": f"{nowhere}/certs"}
    with own_server(engine, logs, tmp_path, **overrides) as own:
        buyer = unique("v")
        token, google_order = own.google.sell()
        reply = own.submit(buyer, token)
        assert reply.status_code == 502 and reply.json()["error"]["code"] == "provider_error", reply.text
        pushed = own.void(token, google_order)
        assert pushed.status_code == 502 and pushed.json()["error"]["code"] == "provider_error", pushed.text
        assert own.api.coins(buyer) == 0 and own.api.ledger(buyer) == []


def test_a_failed_consume_keeps_the_coins_and_is_retried_on_the_next_submission(play: Play) -> None:
    buyer = unique("v")
    token, _ = play.google.sell()
    play.google.failing_consumes = 1
    first = play.submit(buyer, token)
    assert first.status_code == 200, first.text
    assert (first.json()["credited"], first.json()["consumed"]) == (True, False)
    assert play.google.consumed(token) == 0
    assert play.api.coins(buyer) == 550
    second = play.submit(buyer, token)
    assert (second.json()["credited"], second.json()["consumed"]) == (False, True)
    third = play.submit(buyer, token)
    assert (third.json()["credited"], third.json()["consumed"]) == (False, True)
    assert play.google.consumed(token) == 1
    assert play.api.coins(buyer) == 550 and len(play.api.ledger(buyer)) == 1


def test_a_malformed_body_is_refused(play: Play) -> None:
    buyer = unique("v")
    headers = play.api.auth(buyer)
    for body in (
        {},
        {"product_id": "coins_550"},
        {"purchase_token": "tok"},
        {"product_id": "coins_550", "purchase_token": ""},
        {"product_id": "coins_550", "purchase_token": "a b"},
        {"product_id": "Coins 550", "purchase_token": "tok"},
        {"product_id": "coins_550", "purchase_token": 7},
        {"product_id": "coins_550", "purchase_token": "tok", "extra": 1},
    ):
        reply = play.api.http.post(PURCHASES, json=body, headers=headers)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", reply.text
    unsigned = play.api.http.post(PURCHASES, json={"product_id": "coins_550", "purchase_token": "tok"})
    assert unsigned.status_code == 401
    assert play.api.coins(buyer) == 0


def test_a_voided_purchase_is_clawed_back_once_and_a_replay_changes_nothing(play: Play) -> None:
    api = play.api
    buyer = unique("v")
    token, google_order = play.buy(buyer)
    message_id = str(uuid.uuid4().int % 10**16)
    reply = play.void(token, google_order, message_id=message_id)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "handled": True, "clawed_back": True}
    replay = play.void(token, google_order, message_id=message_id)
    assert replay.json() == {"received": True, "handled": True, "replayed": True}
    # Google sending it again under another message id takes nothing more either.
    assert play.void(token, google_order).json() == {"received": True, "handled": True, "clawed_back": False}
    assert api.coins(buyer) == 0
    entries = [(e["kind"], e["delta"], e["balance"]) for e in api.ledger(buyer)]
    assert entries == [("clawback", -550, 0), ("purchase", 550, 550)]
    assert play.order(buyer, token)["state"] == "refunded"
    # Submitted again after the refund: refused.
    again = play.submit(buyer, token)
    assert again.status_code == 422 and again.json()["error"]["code"] == "transaction_revoked"
    assert api.coins(buyer) == 0


def test_a_voided_purchase_after_the_coins_were_spent_reverses_the_gifts(play: Play) -> None:
    api = play.api
    buyer, creator = unique("v"), unique("c")
    room_id = api.open_room(creator)
    token, google_order = play.buy(buyer)  # 550 coins
    assert api.gift(buyer, room_id, "corgi").status_code == 200  # 299 coins -> 149 diamonds
    assert api.coins(buyer) == 251
    assert play.void(token, google_order).json()["clawed_back"] is True
    assert api.coins(buyer) == -299
    entries = [(e["kind"], e["delta"], e["balance"]) for e in api.ledger(buyer)]
    assert entries == [("clawback", -550, -299), ("gift", -299, 251), ("purchase", 550, 550)]
    earnings = api.earnings(creator)
    assert (earnings["pending"], earnings["reversed"], earnings["lifetime"]) == (0, 149, 149)


def test_a_purchase_voided_before_it_was_submitted_is_refused(play: Play) -> None:
    buyer = unique("v")
    token, google_order = play.google.sell()
    assert play.void(token, google_order).json() == {"received": True, "handled": True, "clawed_back": False}
    refused = play.submit(buyer, token)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "transaction_revoked"
    assert play.api.coins(buyer) == 0 and play.api.ledger(buyer) == []
    assert play.google.consumed(token) == 0


def test_a_partial_refund_takes_nothing_back(play: Play) -> None:
    buyer = unique("v")
    token, google_order = play.buy(buyer, "coins_100", quantity=2)
    reply = play.void(token, google_order, refund_type=PARTIAL)
    assert reply.json() == {"received": True, "handled": True, "clawed_back": False}
    assert play.api.coins(buyer) == 200
    assert play.order(buyer, token)["state"] == "paid"


def test_other_notifications_are_acknowledged(play: Play) -> None:
    buyer = unique("v")
    token, google_order = play.buy(buyer)
    assert play.notify({"testNotification": {"version": "1.0"}}).json() == {"received": True, "handled": True}
    for kind in (1, 2):
        product = {"version": "1.0", "notificationType": kind, "purchaseToken": token, "sku": "coins_550"}
        reply = play.notify({"oneTimeProductNotification": product})
        assert reply.json() == {"received": True, "handled": True}, reply.text
    subscription = {"version": "1.0", "notificationType": 4, "purchaseToken": "t", "subscriptionId": "s"}
    assert play.notify({"subscriptionNotification": subscription}).json() == {
        "received": True,
        "handled": False,
    }
    # A subscription's voided purchase, and a refund for another app sharing the topic.
    voided_subscription = {"purchaseToken": token, "orderId": google_order, "productType": 1, "refundType": 1}
    reply = play.notify({"voidedPurchaseNotification": voided_subscription})
    assert reply.json() == {"received": True, "handled": False}
    assert play.void(token, google_order, package="com.example.other").json() == {
        "received": True,
        "handled": False,
    }
    assert play.api.coins(buyer) == 550
    assert play.order(buyer, token)["state"] == "paid"


def test_a_forged_push_is_refused_and_changes_nothing(play: Play) -> None:
    buyer = unique("v")
    token, google_order = play.buy(buyer)
    key = play.google.push_key
    stranger = _rsa()
    forged = [
        push_token(stranger),  # another key under Google's key id
        push_token(stranger, kid="push-key-2"),  # a key id Google does not publish
        push_token(key, aud="https://other.example/push"),
        push_token(key, email="someone@example-project.iam.gserviceaccount.com"),
        push_token(key, email_verified=False),
        push_token(key, iss="https://evil.example"),
        push_token(key, lifetime_s=-600),  # expired ten minutes ago
        push_token(key)[:-12],
        "not-a-token",
        jwt.encode(
            {"aud": AUDIENCE, "email": PUSH_ACCOUNT},
            "s" * 32,
            algorithm="HS256",
            headers={"kid": "push-key-1"},
        ),
    ]
    for bearer in forged:
        reply = play.void(token, google_order, bearer=bearer)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "bad_signature"
    voided = {"purchaseToken": token, "orderId": google_order, "productType": ONE_TIME, "refundType": FULL}
    data = base64.b64encode(
        json.dumps({"packageName": PACKAGE, "voidedPurchaseNotification": voided}).encode()
    )
    body = {"message": {"data": data.decode(), "messageId": "1"}}
    no_bearer: list[dict[str, str]] = [
        {},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer"},
    ]
    for headers in no_bearer:
        reply = play.api.http.post(NOTIFICATIONS, json=body, headers=headers)
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_signature", reply.text
    assert play.api.coins(buyer) == 550
    assert play.order(buyer, token)["state"] == "paid"
    # The genuine push of the same notification still works: nothing above was recorded.
    assert play.void(token, google_order).json()["clawed_back"] is True
    assert play.api.coins(buyer) == 0


def test_google_certificates_are_kept_as_long_as_their_cache_control_says(
    tmp_path: Path, engine: Engine, logs: Path
) -> None:
    with own_server(engine, logs, tmp_path) as own:
        test = {"testNotification": {"version": "1.0"}}
        for _ in range(2):  # without Cache-Control: fetched for each push
            assert own.notify(test).json() == {"received": True, "handled": True}
        assert own.google.certs_fetched == 2
        own.google.certs_max_age = 300
        for _ in range(3):  # fetched once, then kept
            assert own.notify(test).json() == {"received": True, "handled": True}
        assert own.google.certs_fetched == 3
        # Kept, they still refuse a token of another key.
        forged = own.notify(test, bearer=push_token(_rsa()))
        assert forged.status_code == 400 and forged.json()["error"]["code"] == "bad_signature"
        assert own.google.certs_fetched == 3


def test_concurrent_submissions_credit_once_to_one_account(play: Play) -> None:
    api = play.api
    token, _ = play.google.sell()
    buyers = [unique("v") for _ in range(4)]
    headers = {buyer: api.auth(buyer) for buyer in buyers}

    async def run() -> list[tuple[str, httpx.Response]]:
        async with httpx.AsyncClient(base_url=str(api.http.base_url), timeout=60) as http:

            async def submit(buyer: str) -> tuple[str, httpx.Response]:
                body = {"product_id": "coins_550", "purchase_token": token}
                return buyer, await http.post(PURCHASES, json=body, headers=headers[buyer])

            return await asyncio.gather(*(submit(buyers[n % 4]) for n in range(16)))

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
    # Consumed: the owner's submissions racing each other may each have asked for it.
    assert play.google.consumed(token) >= 1
    assert play.submit(owner, token).json()["consumed"] is True


def test_a_malformed_notification_is_refused(play: Play) -> None:
    bearer = {"authorization": f"Bearer {push_token(play.google.push_key)}"}
    bad_data = [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'{"version": "1.0"}').decode(),  # no packageName
        base64.b64encode(b'{"packageName": "p", "voidedPurchaseNotification": {"orderId": "x"}}').decode(),
        base64.b64encode(
            b'{"packageName": "p", "voidedPurchaseNotification": {"purchaseToken": "t", "orderId": "G{1}"}}'
        ).decode(),
    ]
    for data in bad_data:
        body = {"message": {"data": data, "messageId": "42"}, "subscription": "s"}
        reply = play.api.http.post(NOTIFICATIONS, json=body, headers=bearer)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", reply.text
    malformed: list[dict[str, Any]] = [
        {},
        {"message": {"data": "e30="}},
        {"message": {"data": "e30=", "messageId": "{1}"}},
    ]
    for envelope in malformed:
        reply = play.api.http.post(NOTIFICATIONS, json=envelope, headers=bearer)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", reply.text


def test_an_unconfigured_server_answers_provider_unavailable(api: Api, viewer: str) -> None:
    submitted = api.http.post(
        PURCHASES, json={"product_id": "coins_550", "purchase_token": "tok"}, headers=api.auth(viewer)
    )
    notified = api.http.post(
        NOTIFICATIONS,
        json={"message": {"data": "e30=", "messageId": "1"}},
        headers={"authorization": "Bearer x"},
    )
    for reply in (submitted, notified):
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"]["code"] == "provider_unavailable"
    assert api.coins(viewer) == 0
    providers = api.http.get("/v1/payments/providers").json()["providers"]
    assert "google" not in providers


def test_the_providers_route_names_google_play(play: Play) -> None:
    providers = play.api.http.get("/v1/payments/providers").json()["providers"]
    assert "google" in providers


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    key_file = Google().key_file(tmp_path / "key.json")
    env = {"GIFTING_JWT_SECRET": "x" * 64, "GIFTING_WEBHOOK_SECRET": "y" * 64, "GIFTING_DEMO": "1"}
    env.update({k: v.replace("KEY", str(key_file)) for k, v in values.items()})
    return env


FULL_CONFIG = {
    "GIFTING_GOOGLE_PACKAGE_NAME": PACKAGE,
    "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE": "KEY",
    "GIFTING_GOOGLE_PUSH_AUDIENCE": AUDIENCE,
    "GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"GIFTING_GOOGLE_PACKAGE_NAME": PACKAGE},
            "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE and GIFTING_GOOGLE_PUSH_AUDIENCE and "
            "GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT unset",
        ),
        ({**FULL_CONFIG, "GIFTING_GOOGLE_PUSH_AUDIENCE": ""}, "GIFTING_GOOGLE_PUSH_AUDIENCE unset"),
        ({**FULL_CONFIG, "GIFTING_GOOGLE_PACKAGE_NAME": ""}, "GIFTING_GOOGLE_PACKAGE_NAME unset"),
        (
            {**FULL_CONFIG, "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE": ""},
            "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE unset",
        ),
        ({"GIFTING_GOOGLE_API_BASE": "http://127.0.0.1:1/"}, "half configured"),
        ({**FULL_CONFIG, "GIFTING_GOOGLE_PACKAGE_NAME": "com.other"}, "sells no Google Play products"),
        ({**FULL_CONFIG, "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE": "/nonexistent.json"}, "no key file"),
        ({**FULL_CONFIG, "GIFTING_GOOGLE_PUSH_SERVICE_ACCOUNT": "rtdn"}, "must be the email"),
        ({**FULL_CONFIG, "GIFTING_GOOGLE_CERTS_URL": "ftp://certs"}, "must be an http"),
    ],
)
def test_half_a_configuration_refuses_to_start(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(_env(tmp_path, **values))


def test_a_key_file_that_is_no_service_account_key_refuses_to_start(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "service_account", "client_email": PLAY_ACCOUNT}))
    values = {**FULL_CONFIG, "GIFTING_GOOGLE_SERVICE_ACCOUNT_FILE": str(broken)}
    with pytest.raises(SettingsError, match="is not a service account's JSON key"):
        Settings.from_env(_env(tmp_path, **values))


def test_a_full_configuration_turns_google_play_on(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path, **FULL_CONFIG))
    assert settings.google_enabled is True
    assert (settings.google_api_base, settings.google_certs_url) == (
        "https://androidpublisher.googleapis.com/",
        "https://www.googleapis.com/oauth2/v1/certs",
    )
    assert Settings.from_env(_env(tmp_path)).google_enabled is False
