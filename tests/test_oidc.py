"""Sign-in through an OpenID Connect provider: a real local provider (discovery and JWKS over
HTTP) with keys made here, and real server processes configured with it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from server.engine import free_port
from server.settings import Settings, SettingsError
from tests.conftest import Engine
from tests.support import JWT_SECRET, ServerProcess, running_server, server_env, unique
from tests.wsclient import RoomSocket

AUDIENCE = "gifting-server"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# Served beside the real keys and never used: a broken key, an encryption key and a shared
# secret (a JWKS may hold one; a token signed with it must still be refused).
SHARED_SECRET = b"a-shared-secret-in-the-provider-jwks-0123456789"
JUNK_KEYS = [
    {"kty": "RSA", "kid": "broken", "n": "not-base64!"},
    {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": "", "y": ""},
    {"kty": "oct", "kid": "shared", "k": base64.urlsafe_b64encode(SHARED_SECRET).rstrip(b"=").decode()},
]


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            entry = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            entry = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**entry, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass
class Provider:
    """An OpenID Connect provider's public side: discovery and the JWKS, which tests change."""

    keys: list[SigningKey]
    url: str = ""
    jwks_fetches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # What discovery names as the JWKS, when not this provider's own /keys.
    jwks_uri: str | None = None

    def serve(self) -> tuple[ThreadingHTTPServer, threading.Thread]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.url, "jwks_uri": provider.jwks_uri or f"{provider.url}/keys"}
                elif self.path == "/keys":
                    with provider.lock:
                        provider.jwks_fetches += 1
                        body = {"keys": [*JUNK_KEYS, *(key.jwk() for key in provider.keys)]}
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{http.server_address[1]}"
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        return http, thread

    def token(self, key: SigningKey, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None}, key.private, key.alg, headers={"kid": key.kid}
        )


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    provider = Provider([SigningKey.rsa("rsa-1"), SigningKey.ec("ec-1")])
    http, thread = provider.serve()
    yield provider
    http.shutdown()
    http.server_close()
    thread.join()


@pytest.fixture(scope="module")
def oidc_server(engine: Engine, key_prefix: str, logs: Path, provider: Provider) -> Iterator[ServerProcess]:
    """Discovery from the issuer, and a claim mapping other than the defaults."""
    env = server_env(
        engine.url,
        key_prefix,
        GIFTING_OIDC_ISSUER=provider.url,
        GIFTING_OIDC_AUDIENCE=AUDIENCE,
        GIFTING_OIDC_USER_CLAIM="uid",
        GIFTING_OIDC_NAME_CLAIM="nickname",
        GIFTING_OIDC_ROLE_CLAIM="gifting_role",
        GIFTING_JWKS_MIN_REFRESH_S="0.001",
    )
    with running_server(env, logs) as process:
        yield process


@pytest.fixture
def client(oidc_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=oidc_server.base_url, timeout=10) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refusal(reply: httpx.Response) -> str:
    assert reply.status_code == 401, reply.text
    body = reply.json()
    assert body["error"]["code"] == "unauthorized", body
    message: str = body["error"]["message"]
    return message


def refused_everywhere(client: httpx.Client, server: ServerProcess, token: str, says: str) -> None:
    """``token`` is refused over HTTP (401) and on the room socket (4401), saying ``says``."""
    assert says in refusal(client.get("/v1/me", headers=bearer(token)))

    async def over_the_socket() -> tuple[dict[str, Any], int | None]:
        sock = await RoomSocket.open(server.base_url, unique("r"), token)
        frame = await sock.recv()
        return frame, (await sock.closed())[0]

    frame, code = anyio.run(over_the_socket)
    assert (frame["type"], frame["code"], code) == ("error", "unauthorized", 4401), frame
    assert says in frame["message"]


def test_rs256_and_es256_tokens_sign_in_over_http_and_the_room_socket(
    client: httpx.Client, provider: Provider, oidc_server: ServerProcess
) -> None:
    rsa_key, ec_key = provider.keys
    creator, viewer = unique("c"), unique("v")
    creator_token = provider.token(rsa_key, uid=creator, gifting_role="creator", nickname="Cleo")
    me = client.get("/v1/me", headers=bearer(creator_token))
    assert me.status_code == 200, me.text
    assert (me.json()["user_id"], me.json()["role"]) == (creator, "creator")
    opened = client.post("/v1/rooms", json={}, headers=bearer(creator_token))
    assert opened.status_code == 201, opened.text
    room_id = opened.json()["room_id"]

    # No role claim: a viewer.
    viewer_token = provider.token(ec_key, uid=viewer, nickname="Vic")
    me = client.get("/v1/me", headers=bearer(viewer_token))
    assert (me.json()["user_id"], me.json()["role"]) == (viewer, "viewer"), me.text
    order = client.post(
        "/v1/purchases", json={"package_id": "us_550", "region": "US"}, headers=bearer(viewer_token)
    )
    assert order.status_code == 201, order.text
    paid = client.post(f"/v1/sandbox/orders/{order.json()['order_id']}/pay", headers=bearer(viewer_token))
    assert paid.status_code == 200, paid.text

    async def gift_over_the_socket() -> dict[str, Any]:
        sock = await RoomSocket.open(oidc_server.base_url, room_id, viewer_token)
        try:
            await sock.welcome()
            return await sock.gift("rose", 3)
        finally:
            await sock.close()

    ack = anyio.run(gift_over_the_socket)
    assert ack["type"] == "gift_ack" and ack["coins"] == 547, ack
    wallet = client.get("/v1/wallet", headers=bearer(viewer_token))
    assert wallet.json()["coins"] == 547, wallet.text


def test_the_demo_hs256_tokens_still_sign_in(client: httpx.Client) -> None:
    user = unique("u")
    token = jwt.encode({"sub": user, "role": "viewer", "exp": int(time.time()) + 60}, JWT_SECRET)
    me = client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["user_id"] == user, me.text


def test_a_server_with_hs256_tokens_off_refuses_them_and_takes_the_providers(
    engine: Engine, key_prefix: str, logs: Path, provider: Provider
) -> None:
    env = server_env(
        engine.url,
        key_prefix,
        GIFTING_DEMO="0",
        GIFTING_HS256_TOKENS="0",
        GIFTING_OIDC_ISSUER=provider.url,
        GIFTING_OIDC_AUDIENCE=AUDIENCE,
    )
    env.pop("GIFTING_JWT_SECRET", None)
    user = unique("u")
    hs256 = jwt.encode({"sub": user, "role": "viewer", "exp": int(time.time()) + 60}, JWT_SECRET)
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        refused_everywhere(http, server, hs256, "the algorithm 'HS256' is not accepted (only RS256, ES256)")
        token = provider.token(provider.keys[0], sub=user, role="viewer")
        me = http.get("/v1/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["user_id"] == user, me.text


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GIFTING_DEMO": "1", "GIFTING_HS256_TOKENS": "0"}, "would refuse the demo's own tokens"),
        ({"GIFTING_HS256_TOKENS": "0"}, "GIFTING_HS256_TOKENS=0 needs GIFTING_OIDC_ISSUER"),
        ({"GIFTING_HS256_TOKENS": "maybe"}, "GIFTING_HS256_TOKENS must be 1 or 0"),
    ],
)
def test_hs256_tokens_switched_off_without_a_provider_or_in_the_demo_are_refused(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({"GIFTING_JWT_SECRET": JWT_SECRET, **env})


def _hs256_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """An HS256 token keyed with ``secret``, made by hand: PyJWT refuses a PEM key as a secret."""

    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": kid}) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest()).rstrip(
        b"="
    )
    return (signing_input + b"." + signature).decode()


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["gifting_role"] = "admin"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def _bad_tokens(provider: Provider) -> dict[str, tuple[str, str]]:
    rsa_key, ec_key = provider.keys
    user = unique("u")
    now = int(time.time())
    stranger = SigningKey.rsa("rsa-1")  # the provider's kid, another key
    good = provider.token(rsa_key, uid=user)
    claims = {"iss": provider.url, "aud": AUDIENCE, "exp": now + 600, "uid": user}
    return {
        "another issuer": (
            provider.token(rsa_key, uid=user, iss="https://evil.example"),
            "issuer (iss) is not",
        ),
        "another audience": (
            provider.token(ec_key, uid=user, aud="another-service"),
            "audience (aud) is not",
        ),
        "no audience": (provider.token(ec_key, uid=user, aud=None), "aud"),
        "expired": (provider.token(rsa_key, uid=user, exp=now - 120), "expired"),
        "not yet valid": (provider.token(rsa_key, uid=user, nbf=now + 3600), "not yet valid"),
        "no user id": (provider.token(rsa_key, sub=user), "uid"),
        "unknown role": (provider.token(rsa_key, uid=user, gifting_role="owner"), "role must be one of"),
        "hs256 keyed with the public key": (_hs256_with(rsa_key.public_pem(), claims, "rsa-1"), "Signature"),
        "alg none": (jwt.encode(claims, "", algorithm="none", headers={"kid": "rsa-1"}), "'none'"),
        "hs256 keyed with a shared secret of the jwks": (
            _hs256_with(SHARED_SECRET, claims, "shared"),
            "Signature",
        ),
        "rs256 naming the shared secret's kid": (
            provider.token(SigningKey.rsa("shared"), uid=user),
            "'shared'",
        ),
        "unknown kid": (provider.token(SigningKey.rsa("nobody"), uid=user), "'nobody'"),
        "another key under a known kid": (provider.token(stranger, uid=user), "Signature"),
        "tampered claims": (_tampered(good), "Signature"),
        "alg of another key type": (
            jwt.encode(claims, SigningKey.ec("x").private, "ES256", headers={"kid": "rsa-1"}),
            "signs RS256, not ES256",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "another issuer",
        "another audience",
        "no audience",
        "expired",
        "not yet valid",
        "no user id",
        "unknown role",
        "hs256 keyed with the public key",
        "alg none",
        "hs256 keyed with a shared secret of the jwks",
        "rs256 naming the shared secret's kid",
        "unknown kid",
        "another key under a known kid",
        "tampered claims",
        "alg of another key type",
    ],
)
def test_bad_tokens_are_refused_with_a_clear_message(
    client: httpx.Client, provider: Provider, oidc_server: ServerProcess, case: str
) -> None:
    token, says = _bad_tokens(provider)[case]
    refused_everywhere(client, oidc_server, token, says)


def test_rotated_keys_sign_in_at_once_and_withdrawn_ones_no_longer(
    client: httpx.Client, provider: Provider
) -> None:
    user = unique("u")
    old = provider.keys[0]
    before = provider.token(old, uid=user)
    assert client.get("/v1/me", headers=bearer(before)).status_code == 200
    new = SigningKey.rsa(unique("rsa"))
    with provider.lock:
        provider.keys = [new, provider.keys[1]]
    try:
        # The first token naming the new kid makes the server fetch the keys again.
        after = provider.token(new, uid=user)
        me = client.get("/v1/me", headers=bearer(after))
        assert me.status_code == 200 and me.json()["user_id"] == user, me.text
        assert "'rsa-1' is not among" in refusal(client.get("/v1/me", headers=bearer(before)))
    finally:
        with provider.lock:
            provider.keys = [old, provider.keys[1]]
    assert client.get("/v1/me", headers=bearer(before)).status_code == 200


def test_unknown_kids_fetch_the_keys_at_most_once_per_interval(
    engine: Engine, key_prefix: str, logs: Path, provider: Provider
) -> None:
    """The default claim mapping, the JWKS URL given directly, and the refresh interval."""
    env = server_env(
        engine.url,
        key_prefix,
        GIFTING_OIDC_ISSUER=provider.url,
        GIFTING_JWKS_URL=f"{provider.url}/keys",
        GIFTING_OIDC_AUDIENCE=AUDIENCE,
    )
    original = list(provider.keys)
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        user = unique("u")
        me = http.get("/v1/me", headers=bearer(provider.token(original[1], sub=user, role="creator")))
        assert (me.json()["user_id"], me.json()["role"]) == (user, "creator"), me.text
        first, second = SigningKey.ec(unique("ec")), SigningKey.ec(unique("ec"))
        try:
            with provider.lock:
                provider.keys = [*original, first]
                fetched = provider.jwks_fetches
            assert http.get("/v1/me", headers=bearer(provider.token(first, sub=user))).status_code == 200
            assert provider.jwks_fetches == fetched + 1
            with provider.lock:
                provider.keys = [*original, first, second]
            # Within 30 s of the last fetch, an unknown kid is refused without another one.
            for _ in range(5):
                message = refusal(http.get("/v1/me", headers=bearer(provider.token(second, sub=user))))
                assert "is not among the OIDC provider's keys" in message
            assert provider.jwks_fetches == fetched + 1
        finally:
            with provider.lock:
                provider.keys = original


def test_an_unconfigured_server_refuses_oidc_tokens(server: ServerProcess, provider: Provider) -> None:
    token = provider.token(provider.keys[0], sub=unique("u"), role="viewer")
    message = refusal(httpx.get(f"{server.base_url}/v1/me", headers=bearer(token), timeout=10))
    assert "not configured" in message


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GIFTING_OIDC_ISSUER": "https://id.example"}, "GIFTING_OIDC_AUDIENCE must be set"),
        (
            {"GIFTING_JWKS_URL": "https://id.example/keys", "GIFTING_OIDC_AUDIENCE": "a"},
            "needs GIFTING_OIDC_ISSUER",
        ),
        ({"GIFTING_OIDC_ISSUER": "id.example", "GIFTING_OIDC_AUDIENCE": "a"}, "must be an https:// URL"),
    ],
)
def test_incomplete_oidc_settings_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        Settings.from_env({"GIFTING_DEMO": "1", **env})


def test_a_provider_out_of_reach_at_start_is_logged_and_its_tokens_refused(
    engine: Engine, key_prefix: str, logs: Path, provider: Provider
) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    env = server_env(engine.url, key_prefix, GIFTING_OIDC_ISSUER=gone, GIFTING_OIDC_AUDIENCE=AUDIENCE)
    with running_server(env, logs) as server:
        token = jwt.encode(
            {"iss": gone, "aud": AUDIENCE, "exp": int(time.time()) + 60, "sub": unique("u")},
            provider.keys[0].private,
            "RS256",
            headers={"kid": "rsa-1"},
        )
        message = refusal(httpx.get(f"{server.base_url}/v1/me", headers=bearer(token), timeout=10))
        assert "is not among the OIDC provider's keys" in message
        assert "fetching the provider's keys failed (start-up)" in server.output()


def test_a_discovery_document_naming_an_invalid_jwks_url_is_logged_and_its_tokens_refused(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    """A URL httpx cannot even send to is the provider's fault like any other: the server
    still starts, says why in its log, and refuses the provider's tokens with a clear 401."""
    broken = Provider([SigningKey.rsa("rsa-1")], jwks_uri="http://id.example/\x00keys")
    http, thread = broken.serve()
    try:
        env = server_env(
            engine.url, key_prefix, GIFTING_OIDC_ISSUER=broken.url, GIFTING_OIDC_AUDIENCE=AUDIENCE
        )
        with running_server(env, logs) as server:
            token = broken.token(broken.keys[0], sub=unique("u"))
            message = refusal(httpx.get(f"{server.base_url}/v1/me", headers=bearer(token), timeout=10))
            assert "'rsa-1' is not among the OIDC provider's keys" in message
            assert "fetching the provider's keys failed (start-up)" in server.output()
            assert broken.jwks_fetches == 0
    finally:
        http.shutdown()
        http.server_close()
        thread.join()


def test_a_fetch_that_finds_the_same_keys_logs_nothing(
    client: httpx.Client, provider: Provider, oidc_server: ServerProcess
) -> None:
    def logged() -> int:
        return oidc_server.log_path.read_text(errors="replace").count("OIDC: signing keys now")

    before, fetches = logged(), provider.jwks_fetches
    stranger = SigningKey.rsa(unique("rsa"))
    refusal(client.get("/v1/me", headers=bearer(provider.token(stranger, uid=unique("u")))))
    assert provider.jwks_fetches == fetches + 1  # the unknown kid made the server look again
    assert logged() == before
