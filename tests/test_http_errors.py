"""Bad input and bad credentials get a clear JSON error, never a 500, and change nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import Engine
from tests.support import JWT_SECRET, ROOT, Api, ServerProcess, running_server, server_env, unique


def error_code(reply: httpx.Response) -> str:
    code: str = reply.json()["error"]["code"]
    return code


def test_health_and_readiness(api: Api, server: ServerProcess) -> None:
    assert server.process is not None
    assert api.http.get("/healthz").json() == {"status": "ok", "pid": server.process.pid}
    assert api.http.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize(
    "token",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-jwt",
        "Bearer "
        + jwt.encode({"sub": "alice", "role": "viewer", "exp": 2**40}, "wrong-secret-0123456789-0123456789"),
        "Bearer " + jwt.encode({"sub": "alice", "role": "viewer", "exp": 1}, JWT_SECRET),
        "Bearer " + jwt.encode({"sub": "alice", "role": "viewer"}, JWT_SECRET),
        "Bearer " + jwt.encode({"sub": "alice", "role": "king", "exp": 2**40}, JWT_SECRET),
        "Bearer " + jwt.encode({"sub": "{u:x}", "role": "viewer", "exp": 2**40}, JWT_SECRET),
        "Bearer " + jwt.encode({"sub": 7, "role": "viewer", "exp": 2**40}, JWT_SECRET),
        "Bearer " + jwt.encode({"sub": "alice", "role": "viewer", "exp": 2**40}, "", algorithm="none"),
    ],
    ids=[
        "missing",
        "basic",
        "empty",
        "garbage",
        "wrong-secret",
        "expired",
        "no-exp",
        "bad-role",
        "bad-sub",
        "int-sub",
        "alg-none",
    ],
)
def test_bad_credentials_are_401(api: Api, token: str | None) -> None:
    headers = {"authorization": token} if token else {}
    reply = api.http.get("/v1/wallet", headers=headers)
    assert reply.status_code == 401 and error_code(reply) == "unauthorized", reply.text


def test_an_oversize_body_is_413_and_changes_nothing(api: Api, viewer: str) -> None:
    body = b'{"daily_limit": 5, "pad": "' + b"x" * 70_000 + b'"}'
    reply = api.http.put("/v1/wallet/limits", content=body, headers=api.auth(viewer))
    assert reply.status_code == 413 and error_code(reply) == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    streamed = api.http.put("/v1/wallet/limits", content=chunks(), headers=api.auth(viewer))
    assert streamed.status_code == 413
    assert api.wallet(viewer)["daily_limit"] is None


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"daily_limit": 5', b"\xff\xfe{}", b'{"daily_limit": "\xed\xa0\x80"}', b"[" * 10_000],
    ids=["empty", "open", "truncated", "bad-utf8", "surrogate", "deep"],
)
def test_malformed_json_is_422(api: Api, viewer: str, body: bytes) -> None:
    reply = api.http.put("/v1/wallet/limits", content=body, headers=api.auth(viewer))
    assert reply.status_code == 422 and error_code(reply) == "invalid_request"
    assert api.wallet(viewer)["daily_limit"] is None


def test_unknown_routes_and_methods_are_json_errors(api: Api) -> None:
    missing = api.http.get("/v1/nothing")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    wrong = api.http.delete("/v1/wallet")
    assert wrong.status_code == 405 and error_code(wrong) == "method_not_allowed"


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "²"])
def test_bad_paging_parameters_are_422(api: Api, viewer: str, limit: str) -> None:
    reply = api.http.get("/v1/wallet/ledger", params={"limit": limit}, headers=api.auth(viewer))
    assert reply.status_code == 422


@pytest.mark.parametrize(
    ("path", "role"),
    [("/v1/wallet/ledger", "viewer"), ("/v1/creator/earnings/ledger", "creator"), ("/v1/admin/log", "admin")],
)
def test_a_cursor_older_than_every_entry_is_an_empty_page(
    api: Api, viewer: str, path: str, role: str
) -> None:
    api.buy(viewer)  # so there is an entry, and 0-0 is older than it
    reply = api.http.get(path, params={"cursor": "0-0"}, headers=api.auth(viewer, role))
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"entries": [], "next_cursor": None}


@pytest.mark.parametrize(
    "cursor",
    ["99999999999999999999-0", "1-18446744073709551616", "1-0\n", "\u0661-\u0661"],
    ids=["ms-past-64-bits", "seq-past-64-bits", "trailing-newline", "non-ascii-digits"],
)
def test_a_cursor_that_is_no_stream_id_is_422(api: Api, viewer: str, cursor: str) -> None:
    api.buy(viewer)
    reply = api.http.get("/v1/wallet/ledger", params={"cursor": cursor}, headers=api.auth(viewer))
    assert reply.status_code == 422 and error_code(reply) == "invalid_request", reply.text


def test_an_id_with_a_trailing_newline_is_422(api: Api, viewer: str, room: tuple[str, str]) -> None:
    token = api.http.post("/v1/dev/token", json={"user_id": "mallory\n", "role": "viewer"})
    assert token.status_code == 422 and error_code(token) == "invalid_request", token.text
    lookup = api.http.get("/v1/rooms/nope%0A")
    assert lookup.status_code == 422 and error_code(lookup) == "invalid_request", lookup.text
    api.buy(viewer)
    _, room_id = room
    body = {"gift_id": "rose", "count": 1, "idempotency_key": "k\n"}
    gift = api.http.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=api.auth(viewer))
    assert gift.status_code == 422 and error_code(gift) == "invalid_request", gift.text
    assert api.coins(viewer) == 550


def test_a_viewer_cannot_read_creator_earnings(api: Api, viewer: str) -> None:
    reply = api.http.get("/v1/creator/earnings", headers=api.auth(viewer))
    assert reply.status_code == 403 and error_code(reply) == "forbidden"


@pytest.fixture
def production(engine: Engine, key_prefix: str, logs: Path) -> Iterator[ServerProcess]:
    env = server_env(engine.url, key_prefix, GIFTING_DEMO="0")
    with running_server(env, logs) as process:
        yield process


def test_demo_endpoints_do_not_exist_outside_demo_mode(production: ServerProcess) -> None:
    token = jwt.encode({"sub": unique("v"), "role": "viewer", "exp": int(time.time()) + 60}, JWT_SECRET)
    headers = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=production.base_url) as http:
        assert http.post("/v1/dev/token", json={"user_id": "mallory", "role": "admin"}).status_code == 404
        order = http.post("/v1/purchases", json={"package_id": "us_100"}, headers=headers).json()
        assert http.post(f"/v1/sandbox/orders/{order['order_id']}/pay", headers=headers).status_code == 404
        assert http.get("/v1/wallet", headers=headers).json()["coins"] == 0


def test_the_server_refuses_to_start_without_secrets_outside_demo_mode() -> None:
    env = server_env("redis://127.0.0.1:1/0", "x:", GIFTING_DEMO="0", GIFTING_JWT_SECRET="")
    result = subprocess.run(
        [sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "GIFTING_JWT_SECRET must be set" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        # The placeholder of deploy/.env.example and the demo secrets are public.
        ("GIFTING_JWT_SECRET", "replace-me-with-at-least-32-random-bytes-0000", "is public"),
        ("GIFTING_WEBHOOK_SECRET", "replace-me-with-at-least-32-random-bytes-1111", "is public"),
        ("GIFTING_JWT_SECRET", "demo-jwt-secret-not-for-production", "is public"),
        ("GIFTING_WEBHOOK_SECRET", "demo-webhook-secret-not-for-production", "is public"),
        ("GIFTING_JWT_SECRET", " " * 32, "is blank"),
        ("GIFTING_WEBHOOK_SECRET", "ab" * 32, "is too predictable"),
    ],
)
def test_the_server_refuses_to_start_with_a_public_or_weak_secret_outside_demo_mode(
    name: str, value: str, why: str
) -> None:
    env = server_env("redis://127.0.0.1:1/0", "x:", GIFTING_DEMO="0", **{name: value})
    result = subprocess.run(
        [sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"gifting-server: {name} ") and why in line, line
    assert value not in line or not value.strip(), "the message must not echo the secret"


def test_a_demo_server_warns_that_anyone_can_mint_tokens(server: ServerProcess) -> None:
    assert "demo mode: anyone can mint a token for any user and role" in server.log_path.read_text()
