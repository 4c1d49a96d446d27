"""Abuse limits that hold across processes: the per-address request rate, the per-user
connection limit and the per-user gift rate, on two real server processes sharing one engine.

Every client here names its address with ``X-Forwarded-For``, which the server honours from
127.0.0.1 (uvicorn's trusted proxy by default): each test's requests then count against an
address of their own, and setup requests each come from a new address with a full bucket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from server.domain.limits import UNKNOWN_ADDRESS, client_address, is_exempt, retry_after_s
from server.domain.money import gift_fingerprint, utc_day
from server.errors import RateLimited
from server.hub.slots import ConnectionSlots
from server.keys import KeySchema
from server.settings import Settings, SettingsError
from server.store import Store
from server.store.records import CreatorCredit
from tests.conftest import Engine
from tests.support import (
    JWT_SECRET,
    WEBHOOK_SECRET,
    Api,
    ServerProcess,
    delete_prefix,
    engine_client,
    running_server,
    server_env,
    unique,
)
from tests.test_metrics import scrape
from tests.wsclient import JSON, RoomSocket

RATE_PER_S = 0.5  # a token every 2 s: a burst of a few requests never sees one come back
BURST = 5
MAX_CONNECTIONS = 3
PRESENCE_TTL_S = 3.0  # slots refreshed every 1 s
LIMITS_ENV = {
    "GIFTING_IP_RATE": str(RATE_PER_S),
    "GIFTING_IP_BURST": str(BURST),
    "GIFTING_MAX_CONNECTIONS_PER_USER": str(MAX_CONNECTIONS),
    "GIFTING_PRESENCE_TTL_S": str(PRESENCE_TTL_S),
    "GIFTING_CONNECTION_SLOT_TTL_S": str(PRESENCE_TTL_S),
    "FORWARDED_ALLOW_IPS": "127.0.0.1",  # the tests' clients are the trusted proxy
}


def fresh_address() -> str:
    """An IPv6 address alone in its /64 (the unit the limit counts), so its bucket is full."""
    return str(ipaddress.IPv6Address((0xFD << 120) | (secrets.randbits(56) << 64) | 1))


def from_address(server: ServerProcess, address: str) -> httpx.Client:
    """An HTTP client whose every request comes from ``address``."""
    return httpx.Client(base_url=server.base_url, timeout=10, headers={"X-Forwarded-For": address})


def from_fresh_addresses(request: httpx.Request) -> None:
    request.headers["X-Forwarded-For"] = fresh_address()


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    setup: Api  # every request from a new address: setup never meets the limit
    env: dict[str, str]


@pytest.fixture(scope="module")
def pair(engine: Engine, logs: Path) -> Iterator[Pair]:
    prefix = f"{unique('lim')}:"
    env = server_env(engine.url, prefix, **LIMITS_ENV)
    with (
        running_server(env, logs) as a,
        running_server(env, logs) as b,
        httpx.Client(
            base_url=a.base_url, timeout=10, event_hooks={"request": [from_fresh_addresses]}
        ) as http,
    ):
        yield Pair(a, b, Api(http), env)
    if not engine.owned:
        delete_prefix(engine.url, prefix)


async def open_socket(
    server: ServerProcess, path: str, token: str | None = None, address: str | None = None
) -> RoomSocket:
    url = server.base_url.replace("http://", "ws://") + path + (f"?token={token}" if token else "")
    ws = await connect(
        url,
        subprotocols=[Subprotocol(JSON)],
        additional_headers={"X-Forwarded-For": address or fresh_address()},
        max_size=None,
        open_timeout=10,
    )
    return RoomSocket(ws, JSON)


async def join(server: ServerProcess, room_id: str, token: str, address: str | None = None) -> RoomSocket:
    """A socket in the room that was welcomed."""
    sock = await open_socket(server, f"/v1/rooms/{room_id}/ws", token, address)
    frame = await sock.recv()
    assert frame["type"] == "welcome", frame
    return sock


async def refused(sock: RoomSocket) -> tuple[str, int | None, str]:
    """The error code, close code and close reason of a refused connection."""
    frame = await sock.recv()
    assert frame["type"] == "error", frame
    code, reason = await sock.closed()
    return frame["code"], code, reason


async def admitted_within(server: ServerProcess, room_id: str, token: str, wait_s: float) -> RoomSocket:
    """Connect until the server welcomes the socket rather than refusing it as one too many."""
    deadline = time.monotonic() + wait_s
    while True:
        sock = await open_socket(server, f"/v1/rooms/{room_id}/ws", token)
        frame = await sock.recv()
        if frame["type"] == "welcome":
            return sock
        assert frame["code"] == "too_many_connections", frame
        await sock.closed()
        assert time.monotonic() < deadline, f"still refused after {wait_s} s"
        await asyncio.sleep(0.05)


def live_room(pair: Pair) -> tuple[str, str]:
    creator = unique("c")
    return creator, pair.setup.open_room(creator)


# -- the per-address request rate -------------------------------------------------------------


def test_the_request_after_a_burst_is_429_with_retry_after_and_the_bucket_refills(pair: Pair) -> None:
    with from_address(pair.a, fresh_address()) as http, from_address(pair.a, fresh_address()) as other:
        for _ in range(BURST):
            assert http.get("/v1/catalog/gifts").status_code == 200
        over = http.get("/v1/catalog/gifts")
        assert over.status_code == 429
        assert over.json()["error"]["code"] == "rate_limited"
        wait_s = int(over.headers["retry-after"])
        assert 1 <= wait_s <= 1 / RATE_PER_S
        # Another address has a bucket of its own; probes and static files are not counted.
        assert other.get("/v1/catalog/gifts").status_code == 200
        assert http.get("/healthz").status_code == 200 and http.get("/readyz").status_code == 200
        assert http.get("/static/css/common.css").status_code == 200
        assert http.get("/v1/catalog/gifts").status_code == 429
        time.sleep(wait_s)  # the refill: a token comes back only with time
        assert http.get("/v1/catalog/gifts").status_code == 200
        assert http.get("/v1/catalog/gifts").status_code == 429  # one token, not a new burst


def test_two_processes_share_one_bucket_per_address(pair: Pair) -> None:
    address = fresh_address()
    with from_address(pair.a, address) as on_a, from_address(pair.b, address) as on_b:
        for i in range(BURST):
            assert (on_a, on_b)[i % 2].get("/v1/catalog/gifts").status_code == 200
        assert on_a.get("/v1/catalog/gifts").status_code == 429
        assert on_b.get("/v1/catalog/gifts").status_code == 429


def test_a_client_that_is_no_trusted_proxy_cannot_pick_its_address(pair: Pair, logs: Path) -> None:
    env = {**pair.env, "FORWARDED_ALLOW_IPS": "192.0.2.1"}
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        replies = [
            http.get("/v1/catalog/gifts", headers={"X-Forwarded-For": fresh_address()}).status_code
            for _ in range(BURST + 1)
        ]
    assert replies == [200] * BURST + [429]


def test_a_refused_request_changes_nothing(pair: Pair) -> None:
    _, room_id = live_room(pair)
    sender = unique("v")
    pair.setup.buy(sender)
    auth = pair.setup.auth(sender)
    ledger = pair.setup.ledger(sender)
    body = {"gift_id": "rose", "count": 1, "idempotency_key": "refused-then-sent"}
    with from_address(pair.b, fresh_address()) as http:
        for _ in range(BURST):
            assert http.get("/v1/wallet", headers=auth).status_code == 200
        before = scrape(pair.b)
        over = http.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=auth)
        assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
        refused = {"transport": "http", "outcome": "rate_limited"}
        assert scrape(pair.b).since(before, "gifting_gifts_total", **refused) == 1
        assert pair.setup.coins(sender) == 550
        assert pair.setup.ledger(sender) == ledger
        time.sleep(int(over.headers["retry-after"]))
        # The same key now sends the gift for the first time: the refusal recorded nothing.
        sent = http.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=auth)
        assert sent.status_code == 200, sent.text
        assert "idempotent-replayed" not in sent.headers and sent.json()["coins"] == 549
    assert pair.setup.coins(sender) == 549
    assert len(pair.setup.ledger(sender)) == len(ledger) + 1


@pytest.mark.anyio
async def test_a_socket_handshake_takes_a_token_and_one_over_the_rate_is_refused(pair: Pair) -> None:
    _, room_id = live_room(pair)
    token = pair.setup.token(unique("w"))
    address = fresh_address()
    with from_address(pair.a, address) as http:
        for _ in range(BURST - 1):
            assert http.get("/v1/catalog/gifts").status_code == 200
        welcomed = await join(pair.b, room_id, token, address)  # the last token
        assert http.get("/v1/catalog/gifts").status_code == 429
        over = await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token, address)
        frame = await over.recv()
        assert frame["type"] == "error" and frame["code"] == "rate_limited"
        assert 0 < frame["retry_after_ms"] <= 1000 / RATE_PER_S
        assert await over.closed() == (4429, "rate_limited")
        await welcomed.close()


async def spend_the_bucket(server: ServerProcess, address: str) -> None:
    """Take every token of ``address``'s bucket."""
    with from_address(server, address) as http:
        while http.get("/v1/catalog/gifts").status_code != 429:
            pass


@pytest.mark.anyio
async def test_a_handshake_refused_by_rate_holds_no_slot_on_any_process(pair: Pair) -> None:
    """Both limits are asked in one round trip: the slot taken beside a refused rate token is
    given back before the refusal, so the user's last slot is free at once, on either process."""
    _, room_id = live_room(pair)
    token = pair.setup.token(unique("w"))
    mine = [await join(server, room_id, token) for server in (pair.a, pair.b)]  # all slots but one
    assert len(mine) == MAX_CONNECTIONS - 1
    address = fresh_address()
    await spend_the_bucket(pair.a, address)
    for server in (pair.a, pair.b, pair.a):
        over = await open_socket(server, f"/v1/rooms/{room_id}/ws", token, address)
        assert await refused(over) == ("rate_limited", 4429, "rate_limited")
    # No wait: each refused handshake had given its slot back before it was refused.
    mine.append(await join(pair.b, room_id, token))
    extra = await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token)
    assert await refused(extra) == ("too_many_connections", 4429, "too_many_connections")
    for sock in mine:
        await sock.close()


@pytest.mark.anyio
async def test_the_rate_is_refused_first_whatever_else_is_wrong(pair: Pair) -> None:
    _, room_id = live_room(pair)
    user = unique("w")
    token = pair.setup.token(user)
    mine = [await join(pair.a, room_id, token) for _ in range(MAX_CONNECTIONS)]
    address = fresh_address()
    await spend_the_bucket(pair.b, address)
    for path in (f"/v1/rooms/{room_id}/ws?token={token}", f"/v1/rooms/{room_id}/ws?token=not-a-jwt"):
        over = await open_socket(pair.b, path, address=address)
        assert await refused(over) == ("rate_limited", 4429, "rate_limited")
    # The user's slots are as they were: a close frees one for the next connection.
    await mine.pop().close()
    mine.append(await admitted_within(pair.b, room_id, token, wait_s=PRESENCE_TTL_S / 2))
    for sock in mine:
        await sock.close()


# -- the per-user connection limit ----------------------------------------------------------


@pytest.mark.anyio
async def test_one_connection_over_the_limit_is_refused_on_every_process(pair: Pair) -> None:
    _, room_id = live_room(pair)
    user, other = unique("w"), unique("w")
    token = pair.setup.token(user)
    mine = [await join(server, room_id, token) for server in (pair.a, pair.b, pair.a)]
    for server in (pair.a, pair.b):
        extra = await open_socket(server, f"/v1/rooms/{room_id}/ws", token)
        assert await refused(extra) == ("too_many_connections", 4429, "too_many_connections")
    theirs = await join(pair.b, room_id, pair.setup.token(other))
    # The survivors are undisturbed: each still gets the room's gifts.
    sender = unique("v")
    pair.setup.buy(sender)
    assert pair.setup.gift(sender, room_id, "rose").status_code == 200
    for sock in [*mine, theirs]:
        await sock.wait_gift_count(1)
        await sock.close()


@pytest.mark.anyio
async def test_closing_a_connection_frees_its_slot(pair: Pair) -> None:
    _, room_id = live_room(pair)
    token = pair.setup.token(unique("w"))
    mine = [await join(server, room_id, token) for server in (pair.b, pair.a, pair.b)]
    assert (await refused(await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token)))[0] == (
        "too_many_connections"
    )
    await mine.pop(0).close()
    # Sooner than the slot could expire unrefreshed (at least 2 s): the close freed it.
    mine.append(await admitted_within(pair.a, room_id, token, wait_s=PRESENCE_TTL_S / 2))
    assert (await refused(await open_socket(pair.b, f"/v1/rooms/{room_id}/ws", token)))[0] == (
        "too_many_connections"
    )
    for sock in mine:
        await sock.close()


@pytest.mark.anyio
async def test_open_connections_keep_counting_past_the_presence_ttl(pair: Pair) -> None:
    """Each process refreshes its slots with the presence heartbeat, so they never lapse."""
    _, room_id = live_room(pair)
    token = pair.setup.token(unique("w"))
    mine = [await join(server, room_id, token) for server in (pair.a, pair.b, pair.b)]
    await asyncio.sleep(PRESENCE_TTL_S + 1)  # long enough for an unrefreshed slot to expire
    assert (await refused(await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token)))[0] == (
        "too_many_connections"
    )
    for sock in mine:
        await sock.close()


@pytest.mark.anyio
async def test_the_connections_of_a_crashed_process_stop_counting(pair: Pair, logs: Path) -> None:
    _, room_id = live_room(pair)
    token = pair.setup.token(unique("w"))
    with running_server(pair.env, logs) as doomed:
        held = [await join(doomed, room_id, token) for _ in range(MAX_CONNECTIONS)]
        assert (await refused(await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token)))[0] == (
            "too_many_connections"
        )
        assert doomed.process is not None
        doomed.process.kill()
        doomed.process.wait()
        for sock in held:
            await sock.closed()
    # No process refreshes the slots any more: each expires within the presence TTL of its
    # last refresh. Not all at once: a slot taken after the process's last refresh outlives
    # the others by up to a refresh interval, so each new socket waits for a slot of its own.
    sockets: list[RoomSocket] = []
    try:
        for server in [pair.a, *[pair.b] * (MAX_CONNECTIONS - 1)]:
            sockets.append(await admitted_within(server, room_id, token, wait_s=10 * PRESENCE_TTL_S))
        # Every slot of the crashed process is gone and the new ones count: the limit holds.
        assert (await refused(await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token)))[0] == (
            "too_many_connections"
        )
    finally:
        for sock in sockets:
            await sock.close()


@pytest.mark.anyio
async def test_overlay_sockets_count_against_their_creator(pair: Pair) -> None:
    creator, room_id = live_room(pair)
    reply = pair.setup.http.get("/v1/creator/overlay", headers=pair.setup.auth(creator, "creator"))
    overlay = f"/v1/overlay/{reply.json()['token']}/ws"
    token = pair.setup.token(creator, "creator")
    mine = [await join(pair.a, room_id, token), await join(pair.b, room_id, token)]
    scene = await open_socket(pair.b, overlay)
    assert (await scene.recv())["type"] == "welcome"
    assert await refused(await open_socket(pair.a, overlay)) == (
        "too_many_connections",
        4429,
        "too_many_connections",
    )
    assert (await refused(await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token)))[0] == (
        "too_many_connections"
    )
    for sock in [*mine, scene]:
        await sock.close()


# -- without the engine ---------------------------------------------------------------------


def test_the_limit_fails_open_while_the_engine_is_down(tmp_path: Path, logs: Path) -> None:
    """Routes that need no engine keep answering, those that need it answer 503, never 500;
    the outage is logged once, and the limit is back once the engine is."""
    from server.engine import EmbeddedEngine

    engine = EmbeddedEngine(tmp_path / "engine", fsync="always").start()
    env = server_env(engine.url, "gifting:", **LIMITS_ENV)
    viewer = unique("v")
    try:
        with running_server(env, logs) as server, from_address(server, fresh_address()) as http:
            auth = {"authorization": f"Bearer {Api(http).token(viewer)}"}
            engine.stop()
            for _ in range(2 * BURST):
                assert http.get("/v1/catalog/gifts").status_code == 200
            down = http.get("/v1/wallet", headers=auth)
            assert down.status_code == 503 and down.json()["error"]["code"] == "engine_unavailable"
            engine.start()
            deadline = time.monotonic() + 15
            while (reply := http.get("/v1/catalog/gifts")).status_code == 200:
                assert time.monotonic() < deadline, "the limit did not come back with the engine"
                time.sleep(0.05)
            assert reply.status_code == 429
            log = server.log_path.read_text()
            assert log.count("per-address request limit off") == 1
            assert log.count("per-address request limit on again") == 1
    finally:
        engine.stop()


@pytest.mark.anyio
@pytest.mark.usefixtures("needs_own_engine")
async def test_the_limits_survive_a_flushed_script_cache(pair: Pair, engine: Engine) -> None:
    _, room_id = live_room(pair)
    token = pair.setup.token(unique("w"))
    with engine_client(engine.url) as client:
        client.script_flush()
    mine = [await join(server, room_id, token) for server in (pair.a, pair.b, pair.a)]
    assert (await refused(await open_socket(pair.b, f"/v1/rooms/{room_id}/ws", token)))[0] == (
        "too_many_connections"
    )
    with engine_client(engine.url) as client:
        client.script_flush()
    await asyncio.sleep(PRESENCE_TTL_S + 1)  # the slots are refreshed, by a script loaded again
    assert (await refused(await open_socket(pair.a, f"/v1/rooms/{room_id}/ws", token)))[0] == (
        "too_many_connections"
    )
    with from_address(pair.b, fresh_address()) as http:
        assert [http.get("/v1/catalog/gifts").status_code for _ in range(BURST + 1)] == [200] * BURST + [429]
    for sock in mine:
        await sock.close()


# -- the per-user gift rate ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_process_whose_clock_runs_ahead_does_not_refill_a_users_gift_bucket(
    pair: Pair, engine: Engine
) -> None:
    """Two debits take a burst of 2 (a token a second); a third, from a process whose clock
    is a minute ahead, is refused all the same: the engine's clock times the bucket."""
    creator, room_id = live_room(pair)
    sender = unique("v")
    pair.setup.buy(sender)
    async with Store.from_url(engine.url, KeySchema(pair.env["GIFTING_KEY_PREFIX"])) as store:

        async def debit(now_ms: int) -> int:
            credit = CreatorCredit(unique("g_"), creator, room_id, sender, "rose", 1, 1, 0, now_ms)
            debited = await store.wallets.debit_gift(
                credit=credit,
                idempotency_key=unique("k"),
                fingerprint=gift_fingerprint(room_id, "rose", 1),
                day=utc_day(now_ms),
                idempotency_ttl_s=60,
                rate_per_s=1,
                burst=2,
                clawback_window_ms=Settings().clawback_window_ms,
            )
            return debited.coins

        now_ms = int(time.time() * 1000)
        assert [await debit(now_ms), await debit(now_ms)] == [549, 548]
        with pytest.raises(RateLimited) as over:
            await debit(now_ms + 60_000)
        assert 0 < over.value.retry_after_ms <= 1000
    assert pair.setup.coins(sender) == 548


# -- the rules, fed with inputs -------------------------------------------------------------


@pytest.mark.pure
@pytest.mark.parametrize(
    ("client", "address"),
    [
        (("203.0.113.7", 5000), "203.0.113.7"),
        (["203.0.113.7", 5000], "203.0.113.7"),
        (("2001:db8:1:2:aaaa::1", 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:ffff:ffff:ffff:ffff", 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:3::1", 0), "2001:db8:1:3::/64"),
        (("fe80::1%eth0", 0), "fe80::/64"),
        (("::ffff:198.51.100.4", 0), "198.51.100.4"),
        (("unknown", 0), UNKNOWN_ADDRESS),
        (("{evil}", 0), UNKNOWN_ADDRESS),
        (None, None),
    ],
)
def test_the_address_a_client_counts_against(client: tuple[str, int] | None, address: str | None) -> None:
    assert client_address(client) == address


@pytest.mark.pure
def test_probes_scrapes_static_files_and_the_payment_webhook_are_exempt_and_nothing_else() -> None:
    webhooks = ("/v1/payments/webhook", "/v1/payments/stripe/webhook")
    for path in ("/healthz", "/readyz", "/metrics", "/static/js/live.js", *webhooks):
        assert is_exempt(path), path
    others = ("/", "/creator", "/static", "/healthz/x", "/v1/rooms", "/v1/dev/token", "/v1/purchases")
    for path in (*others, "/v1/payments/providers", "/v1/payments/stripe"):
        assert not is_exempt(path), path


@pytest.mark.pure
@pytest.mark.parametrize(("ms", "seconds"), [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (4500, 5)])
def test_retry_after_rounds_up_to_whole_seconds(ms: int, seconds: int) -> None:
    assert retry_after_s(ms) == seconds


@pytest.mark.pure
def test_the_slot_book_hands_out_each_release_once_and_refreshes_on_schedule() -> None:
    slots = ConnectionSlots("n_1", refresh_every_s=5)
    first, second, third = slots.new_slot(), slots.new_slot(), slots.new_slot()
    assert len({first, second, third}) == 3 and all(s.startswith("n_1:") for s in (first, second, third))
    a, b, c = object(), object(), object()
    slots.hold("alice", a, first)
    slots.hold("alice", b, second)
    slots.hold("bob", c, third)
    assert slots.take_due(100.0) == {"alice": [first, second], "bob": [third]}
    assert slots.take_due(104.9) == {}
    assert slots.release("alice", a) and not slots.release("alice", a)
    assert not slots.release("bob", a)  # a connection that never held bob's slot
    assert slots.held() == {"alice": [second], "bob": [third]}
    assert slots.take_released() == [("alice", first)]
    assert slots.take_released() == []
    assert slots.release("bob", c)
    assert slots.take_due(105.0) == {"alice": [second]}
    assert slots.held() == {"alice": [second]}
    assert slots.take_released() == [("bob", third)]


@pytest.mark.pure
def test_limit_settings_are_read_and_checked() -> None:
    base = {"GIFTING_JWT_SECRET": JWT_SECRET, "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET}
    defaults = Settings.from_env(base)
    assert (defaults.ip_rate_per_s, defaults.ip_burst, defaults.max_connections_per_user) == (50, 200, 20)
    custom = Settings.from_env(
        {
            **base,
            "GIFTING_IP_RATE": "0.25",
            "GIFTING_IP_BURST": "3",
            "GIFTING_MAX_CONNECTIONS_PER_USER": "0",
        }
    )
    assert (custom.ip_rate_per_s, custom.ip_burst, custom.max_connections_per_user) == (0.25, 3, 0)
    assert Settings.from_env({**base, "GIFTING_IP_RATE": "0"}).ip_rate_per_s == 0
    for name, value in (
        ("GIFTING_IP_RATE", "-1"),
        ("GIFTING_IP_RATE", "nan"),
        ("GIFTING_IP_RATE", "fast"),
        ("GIFTING_IP_BURST", "0"),
        ("GIFTING_MAX_CONNECTIONS_PER_USER", "-1"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**base, name: value})
