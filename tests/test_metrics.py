"""``GET /metrics``, JSON logs with request ids, and the Grafana dashboard, on real servers.

Each metric test scrapes a running server before and after what it does and checks the
difference against what it did: gifts by transport and outcome, coins and diamonds moved,
open sockets, frames written, slow consumers dropped, engine errors.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from server.api.request_ids import request_id
from server.app import create_app
from server.engine import EmbeddedEngine
from server.keys import KeySchema
from server.settings import Settings, SettingsError
from tests.conftest import Engine
from tests.support import (
    JWT_SECRET,
    ROOT,
    WEBHOOK_SECRET,
    Api,
    ServerProcess,
    engine_client,
    running_server,
    server_env,
    unique,
)
from tests.test_request_heads import connect, gift_request
from tests.test_rooms import raw_upgrade
from tests.wsclient import RoomSocket

DASHBOARD = ROOT / "deploy" / "grafana" / "gifting-dashboard.json"
SECRETS = {"GIFTING_JWT_SECRET": JWT_SECRET, "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET}
Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One scrape of ``/metrics``: every sample by name and labels, and each family's type."""

    samples: dict[tuple[str, Labels], float]
    families: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def since(self, before: Scrape, name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)


def scrape(server: ServerProcess) -> Scrape:
    reply = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, Labels], float] = {}
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(reply.text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, families)


async def eventually(server: ServerProcess, check: Callable[[Scrape], bool], wait_s: float = 10) -> Scrape:
    """The first scrape for which ``check`` holds (what a socket close changes lands a moment
    after the client sees the close)."""
    deadline = time.monotonic() + wait_s
    while True:
        current = scrape(server)
        if check(current):
            return current
        assert time.monotonic() < deadline, "the metrics never reached the expected values"
        await asyncio.sleep(0.05)


def gifts(transport: str, outcome: str) -> dict[str, str]:
    return {"transport": transport, "outcome": outcome}


def exported_gifting_families() -> dict[str, str]:
    """Every ``gifting_*`` family the server defines, with its type."""
    return {f.name: f.type for f in REGISTRY.collect() if f.name.startswith("gifting_")}


# -- gifts, coins and diamonds ---------------------------------------------------------


@pytest.mark.anyio
async def test_gifts_over_http_and_websocket_show_as_exactly_those_increments(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    sender = unique("v")
    before = scrape(server)
    api.buy(sender, "us_550")
    costs = []
    keys = []
    for gift_id, count in (("rose", 3), ("doughnut", 1), ("hand_hearts", 2)):
        keys.append(unique("k"))
        reply = api.gift(sender, room_id, gift_id, count, key=keys[-1])
        assert reply.status_code == 200, reply.text
        costs.append(reply.json()["cost"])
    replay = api.gift(sender, room_id, "rose", 3, key=keys[0])
    assert replay.headers.get("idempotent-replayed") == "true"
    sock = await RoomSocket.open(server.base_url, room_id, api.token(sender))
    await sock.welcome()
    for gift_id, count, cost in (("finger_heart", 2, 10), ("perfume", 1, 20)):
        ack = await sock.gift(gift_id, count)
        assert ack["type"] == "gift_ack", ack
        costs.append(cost)
    await sock.wait_gift_count(2 + 1)  # the socket's own two gifts came back in batches
    after = scrape(server)
    await sock.close()

    assert after.since(before, "gifting_gifts_total", **gifts("http", "acked")) == 3
    assert after.since(before, "gifting_gifts_total", **gifts("http", "replayed")) == 1
    assert after.since(before, "gifting_gifts_total", **gifts("ws", "acked")) == 2
    assert after.since(before, "gifting_gifts_total", **gifts("ws", "replayed")) == 0
    assert after.since(before, "gifting_gift_debit_seconds_count") == 6  # the replay's debit too
    assert after.since(before, "gifting_gift_debit_seconds_sum") > 0
    assert after.since(before, "gifting_coins_purchased_total", provider="sandbox") == 550
    assert after.since(before, "gifting_purchases_total", provider="sandbox") == 1
    assert after.since(before, "gifting_coins_spent_total") == sum(costs) == 550 - api.coins(sender)
    diamonds = after.since(before, "gifting_diamonds_credited_total")
    assert diamonds == sum(cost // 2 for cost in costs) == api.earnings(creator)["pending"]
    # Every frame the socket read was counted, its bytes at least its header and payload.
    assert after.since(before, "gifting_websocket_frames_sent_total") >= len(sock.frames)
    payload = sum(len(orjson.dumps(frame)) for frame in sock.frames)
    assert after.since(before, "gifting_websocket_bytes_sent_total") >= payload + 2 * len(sock.frames)
    assert exported_gifting_families().items() <= after.families.items()


@pytest.mark.anyio
async def test_a_refused_gift_counts_under_its_error_code_and_moves_no_coin(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    broke = unique("v")
    before = scrape(server)
    assert api.gift(broke, room_id, "rose").status_code == 402
    bad = {"gift_id": "rose", "count": 0, "idempotency_key": unique("k")}
    path = f"/v1/rooms/{room_id}/gifts"
    assert api.http.post(path, json=bad, headers=api.auth(broke)).status_code == 422
    assert api.http.post(path, json={**bad, "count": 1}).status_code == 401
    assert api.end_room(creator, room_id).status_code == 200
    assert api.gift(broke, room_id, "rose").status_code == 409
    other_room = api.open_room(unique("c"))
    sock = await RoomSocket.open(server.base_url, other_room, api.token(broke))
    await sock.welcome()
    refused = await sock.gift("rose")
    assert (refused["type"], refused["code"]) == ("error", "insufficient_coins")
    await sock.send({"type": "gift", "gift_id": "rose", "count": 1000, "idempotency_key": "k"})
    assert (await sock.wait_for(lambda f: f["type"] == "error", new=True))["code"] == "invalid_request"
    await sock.close()
    after = scrape(server)

    for transport, outcome in (
        ("http", "insufficient_coins"),
        ("http", "invalid_request"),
        ("http", "unauthorized"),
        ("http", "room_ended"),
        ("ws", "insufficient_coins"),
        ("ws", "invalid_request"),
    ):
        assert after.since(before, "gifting_gifts_total", **gifts(transport, outcome)) == 1, outcome
    for transport in ("http", "ws"):
        assert after.since(before, "gifting_gifts_total", **gifts(transport, "acked")) == 0
    assert after.since(before, "gifting_gift_debit_seconds_count") == 2  # the two debits refused
    assert after.since(before, "gifting_coins_spent_total") == 0
    assert after.since(before, "gifting_diamonds_credited_total") == 0


@pytest.mark.anyio
async def test_a_gift_whose_client_leaves_mid_body_counts_as_client_closed_not_as_a_fault(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    """A client that closes its connection while the body is on its way (a phone losing its
    network) is no fault of the server: counted as ``client_closed``, logged without a
    traceback, nothing debited. (Before, it counted as ``internal_error``, with an ERROR line
    and a traceback, as a bug would.)"""
    _, room_id = room
    sender = unique("v")
    api.buy(sender, "us_100")
    before = scrape(server)
    with connect(server) as sock:
        sock.sendall(gift_request(api, sender, room_id)[:-20])  # the body's last 20 bytes never come
    after = await eventually(
        server, lambda now: now.since(before, "gifting_gifts_total", **gifts("http", "client_closed")) == 1
    )
    assert after.since(before, "gifting_gifts_total", **gifts("http", "internal_error")) == 0
    assert api.coins(sender) == 100
    log = server.log_path.read_text()
    assert f"unhandled error on POST /v1/rooms/{room_id}/gifts" not in log
    assert f"the client closed the connection during POST /v1/rooms/{room_id}/gifts" in log


@pytest.mark.anyio
async def test_an_engine_error_that_is_no_outage_answers_internal_error_over_both_transports(
    server: ServerProcess, api: Api, room: tuple[str, str], engine: Engine, key_prefix: str
) -> None:
    _, room_id = room
    sender = unique("v")
    token = api.token(sender)
    wallet = KeySchema(key_prefix).user(sender).wallet
    with engine_client(engine.url) as client:
        client.set(wallet, "not a hash")  # the debit script's HGET on it fails inside Lua
    before = scrape(server)
    over_http = api.gift(sender, room_id, "rose")
    sock = await RoomSocket.open(server.base_url, room_id, token)
    await sock.welcome()
    key = unique("k")
    over_ws = await sock.gift("rose", key=key)
    await sock.close()
    after = scrape(server)

    assert over_http.status_code == 500 and over_http.json()["error"]["code"] == "internal_error"
    assert (over_ws["type"], over_ws["code"], over_ws["idempotency_key"]) == ("error", "internal_error", key)
    assert "retry-after" not in over_http.headers
    for transport in ("http", "ws"):
        assert after.since(before, "gifting_gifts_total", **gifts(transport, "internal_error")) == 1
        assert after.since(before, "gifting_gifts_total", **gifts(transport, "engine_unavailable")) == 0
    assert after.since(before, "gifting_engine_errors_total", kind="response") == 2
    with engine_client(engine.url) as client:
        assert client.get(wallet) == "not a hash"
    log = server.log_path.read_text()
    assert f"unhandled error on POST /v1/rooms/{room_id}/gifts" in log
    assert f"unhandled error on a gift frame on /v1/rooms/{room_id}/ws" in log
    assert log.count("WRONGTYPE") >= 2


@pytest.mark.anyio
async def test_frames_that_are_no_gift_count_as_invalid_frames_not_as_gifts(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    _, room_id = room
    before = scrape(server)
    sock = await RoomSocket.open(server.base_url, room_id, api.token(unique("v")))
    await sock.welcome()
    for raw in ("not json", "[1]", '{"type": "teleport"}', '{"type": "ping", "x": 1}'):
        await sock.ws.send(raw)
        assert (await sock.wait_for(lambda f: f["type"] == "error", new=True))["code"] == "invalid_request"
    await sock.close()
    after = scrape(server)

    assert after.since(before, "gifting_websocket_invalid_frames_total") == 4
    assert after.since(before, "gifting_gifts_total", **gifts("ws", "invalid_request")) == 0


# -- sockets ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_connections_gauge_follows_sockets_opening_and_closing(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    before = scrape(server)
    viewer = {"gifting_websocket_connections": {"kind": "viewer"}}
    overlay = {"gifting_websocket_connections": {"kind": "overlay"}}

    def connections(current: Scrape, kind: dict[str, dict[str, str]]) -> float:
        [(name, labels)] = kind.items()
        return current.since(before, name, **labels)

    socks = [await RoomSocket.open(server.base_url, room_id, api.token(unique("w"))) for _ in range(2)]
    token = api.http.get("/v1/creator/overlay", headers=api.auth(creator, "creator")).json()["token"]
    socks.append(await RoomSocket.open(server.base_url, "", None, path=f"/v1/overlay/{token}/ws"))
    for sock in socks:
        await sock.welcome()
    opened = scrape(server)
    assert (connections(opened, viewer), connections(opened, overlay)) == (2, 1)

    await socks[0].close()
    await eventually(server, lambda s: (connections(s, viewer), connections(s, overlay)) == (1, 1))
    for sock in socks[1:]:
        await sock.close()
    await eventually(server, lambda s: (connections(s, viewer), connections(s, overlay)) == (0, 0))

    unauthorized = await RoomSocket.open(server.base_url, room_id, "not-a-token")
    assert (await unauthorized.closed())[0] == 4401
    gone = await RoomSocket.open(server.base_url, unique("r"), api.token(unique("w")))
    assert (await gone.closed())[0] == 4404
    after = scrape(server)
    refusals = "gifting_websocket_refusals_total"
    assert after.since(before, refusals, code="4401", reason="unauthorized") == 1
    assert after.since(before, refusals, code="4404", reason="room_not_found") == 1
    assert (connections(after, viewer), connections(after, overlay)) == (0, 0)


@pytest.mark.anyio
async def test_a_reader_that_stops_reading_is_dropped_and_counted(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    env = server_env(
        engine.url,
        key_prefix,
        GIFTING_WS_BUFFER_BYTES="4096",
        GIFTING_GIFT_RATE="1000",
        GIFTING_GIFT_BURST="1000",
    )
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = Api(http)
        room_id = api.open_room(unique("c"))
        before = scrape(server)
        stalled = raw_upgrade(server.port, f"/v1/rooms/{room_id}/ws?token={api.token(unique('w'))}", 4096)
        senders = [unique("v") for _ in range(4)]
        for sender in senders:
            api.buy(sender, "us_1250")
        dropped = 0.0
        for i in range(1000):
            assert api.gift(senders[i % 4], room_id, "rose").status_code == 200
            if i % 10 == 9:
                dropped = scrape(server).since(before, "gifting_websocket_slow_consumers_dropped_total")
                if dropped:
                    break
        assert dropped == 1
        after = await eventually(
            server, lambda s: s.since(before, "gifting_websocket_connections", kind="viewer") == 0
        )
        assert after.since(before, "gifting_websocket_frames_sent_total") > 0
        stalled.close()


# -- several processes on one node -----------------------------------------------------


@pytest.mark.anyio
async def test_the_processes_of_a_node_serve_the_sum_of_their_metrics(
    engine: Engine, key_prefix: str, logs: Path, tmp_path: Path
) -> None:
    """prometheus-client's multiprocess mode: two processes share PROMETHEUS_MULTIPROC_DIR."""
    env = server_env(engine.url, key_prefix, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    with (
        running_server(env, logs) as a,
        running_server(env, logs) as b,
        httpx.Client(base_url=a.base_url, timeout=10) as http,
    ):
        api = Api(http)
        room_id = api.open_room(unique("c"))
        sender = unique("v")
        api.buy(sender)
        before = scrape(a)
        assert (
            scrape(b).value("gifting_coins_purchased_total", provider="sandbox")
            == before.value("gifting_coins_purchased_total", provider="sandbox")
            > 0
        )
        with httpx.Client(base_url=b.base_url, timeout=10) as http_b:
            api_b = Api(http_b, api.tokens)
            for _ in range(2):
                assert api.gift(sender, room_id, "rose").status_code == 200
            for _ in range(3):
                assert api_b.gift(sender, room_id, "rose").status_code == 200
        socks = [await RoomSocket.open(s.base_url, room_id, api.token(unique("w"))) for s in (a, b, b)]
        for sock in socks:
            await sock.welcome()
        for served_by in (a, b):
            now = scrape(served_by)
            assert now.since(before, "gifting_gifts_total", **gifts("http", "acked")) == 5
            assert now.since(before, "gifting_coins_spent_total") == 5
            assert now.since(before, "gifting_websocket_connections", kind="viewer") == 3

        # A process that dies takes its open sockets out of the sum, and leaves its counts in.
        assert b.process is not None
        b.process.kill()
        b.process.wait()
        after = scrape(a)
        assert after.since(before, "gifting_websocket_connections", kind="viewer") == 1
        assert after.since(before, "gifting_gifts_total", **gifts("http", "acked")) == 5
        for sock in socks:
            await sock.close()


# -- JSON logs and request ids ---------------------------------------------------------


async def visit(base_url: str, room_id: str, token: str) -> None:
    sock = await RoomSocket.open(base_url, room_id, token)
    await sock.welcome()
    await sock.close()


def test_json_logs_are_one_object_per_line_with_the_request_id_and_no_token(
    tmp_path: Path, logs: Path
) -> None:
    engine = EmbeddedEngine(tmp_path / "engine", fsync="everysec").start()
    env = server_env(engine.url, "gifting:", GIFTING_LOG_FORMAT="json")
    viewer = unique("v")
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
            api = Api(http)
            api.buy(viewer)
            token = api.token(viewer)
            path = "/v1/rooms/demo_carol/gifts"
            body = {"gift_id": "rose", "count": 1, "idempotency_key": unique("k")}
            sent = http.post(path, json=body, headers={**api.auth(viewer), "X-Request-ID": "gift-req-1"})
            assert sent.status_code == 200 and sent.headers["x-request-id"] == "gift-req-1"
            for unsafe in ("two words", "x" * 65, "semi;colon"):
                generated = http.get("/healthz", headers={"X-Request-ID": unsafe}).headers["x-request-id"]
                assert re.fullmatch("[0-9a-f]{16}", generated), generated
            assert http.get("/v1/rooms", params={"token": token}).status_code == 200
            asyncio.run(visit(server.base_url, "demo_carol", token))
            engine.stop()
            down = http.post(
                path,
                json={**body, "idempotency_key": unique("k")},
                headers={**api.auth(viewer), "X-Request-ID": "outage-1"},
            )
            assert down.status_code == 503
            during = scrape(server)
            assert during.value("gifting_gifts_total", **gifts("http", "engine_unavailable")) == 1
            assert during.value("gifting_engine_errors_total", kind="connection") >= 1
        text = server.log_path.read_text()
    finally:
        engine.stop()

    entries = [orjson.loads(line) for line in text.splitlines()]  # every line is JSON
    assert len(entries) > 10
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= entry.keys(), entry
    [gift_line] = [e for e in entries if e.get("request_id") == "gift-req-1"]
    assert gift_line["logger"] == "uvicorn.access"
    assert (gift_line["method"], gift_line["path"], gift_line["status"]) == ("POST", path, 200)
    assert (gift_line["sender"], gift_line["room"]) == (viewer, "demo_carol")
    assert gift_line["gift_event_id"] == sent.json()["gift_event_id"]
    # The gift path's warning and the access line both carry the request's id and the gift's
    # sender and room.
    outage = {e["logger"]: e for e in entries if e.get("request_id") == "outage-1"}
    assert {"uvicorn.access", "server.api.answers"} <= outage.keys(), outage
    for name in ("uvicorn.access", "server.api.answers"):
        assert (outage[name]["sender"], outage[name]["room"]) == (viewer, "demo_carol"), outage[name]
    assert "engine unavailable" in outage["server.api.answers"]["message"]
    [socket_line] = [e for e in entries if "WebSocket /v1/rooms/demo_carol/ws" in e["message"]]
    assert "token=<redacted>" in socket_line["message"] and re.fullmatch(
        "[0-9a-f]{16}", socket_line["request_id"]
    )
    assert token not in text and token.split(".")[2] not in text
    assert "/v1/rooms?token=<redacted>" in text


def test_text_logs_carry_the_request_id_on_the_access_line(server: ServerProcess, api: Api) -> None:
    assert api.http.get("/healthz", headers={"X-Request-ID": "text-req-1"}).status_code == 200
    lines = [line for line in server.log_path.read_text().splitlines() if "request_id=text-req-1" in line]
    assert len(lines) == 1 and '"GET /healthz HTTP/1.1" 200' in lines[0]


@pytest.mark.anyio
async def test_socket_handshakes_are_logged_only_with_gifting_socket_log(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    env = server_env(engine.url, key_prefix, GIFTING_SOCKET_LOG="0")
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = Api(http)
        room_id = api.open_room(unique("c"))
        sock = await RoomSocket.open(server.base_url, room_id, api.token(unique("w")))
        await sock.welcome()  # accepted, and uvicorn's line for it written before the welcome
        await sock.close()
        log = server.log_path.read_text()
    assert '"POST /v1/rooms HTTP/1.1" 201' in log  # an HTTP request still gets its access line
    assert "WebSocket /v1/rooms" not in log and "connection open" not in log


@pytest.mark.pure
@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (b"abc-123", True),
        (b"0f8fad5b-d9cb-469f-a165-70867728950e", True),
        (b"Root:1.2_x", True),
        (b"a" * 64, True),
        (b"a" * 65, False),
        (b"", False),
        (b"two words", False),
        (b"caf\xc3\xa9", False),
        (b"x\n", False),
    ],
)
def test_a_request_keeps_a_safe_short_id_and_gets_a_new_one_otherwise(header: bytes, kept: bool) -> None:
    rid = request_id({"headers": [(b"accept", b"*/*"), (b"x-request-id", header)]})
    assert (rid == header.decode("latin-1")) is kept
    if not kept:
        assert re.fullmatch("[0-9a-f]{16}", rid)
        assert request_id({"headers": []}) != rid


# -- the endpoint itself ---------------------------------------------------------------


@pytest.mark.pure
@pytest.mark.parametrize("enabled", [True, False])
def test_gifting_metrics_0_turns_the_endpoint_off(enabled: bool) -> None:
    settings = Settings.from_env({**SECRETS, "GIFTING_METRICS": "1" if enabled else "0"})
    app = create_app(settings, "redis://127.0.0.1:1/0")

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/metrics")

    reply = asyncio.run(fetch())
    if enabled:
        assert reply.status_code == 200 and "# TYPE gifting_gifts_total counter" in reply.text
        assert reply.headers["x-request-id"]
    else:
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("allowed", "served"), [("10.0.0.0/8, ::1", False), ("10.0.0.0/8,127.0.0.1", True)])
def test_metrics_are_served_only_to_the_allowed_addresses(
    engine: Engine, key_prefix: str, logs: Path, allowed: str, served: bool
) -> None:
    env = server_env(engine.url, key_prefix, GIFTING_METRICS_ALLOW=allowed)
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url) as http:
        reply = http.get("/metrics")
        if served:
            assert reply.status_code == 200 and "# TYPE gifting_gifts_total counter" in reply.text
        else:
            # As if there were no such route: nothing tells a stranger it exists.
            assert reply.status_code == 404
            assert reply.json() == {"error": {"code": "not_found", "message": "no route /metrics"}}
        assert http.get("/readyz").status_code == 200


@pytest.mark.pure
@pytest.mark.parametrize("value", ["10.0.0.0/33", "localhost", "10.0.0.1/8", "*"])
def test_a_malformed_metrics_allow_list_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="GIFTING_METRICS_ALLOW"):
        Settings.from_env({**SECRETS, "GIFTING_METRICS_ALLOW": value})


# -- the Grafana dashboard -------------------------------------------------------------

_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
}
_PROMQL_WORDS.add("unless")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are no function, keyword,
    label name, label value or range."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", expr):
        if match[0] not in _PROMQL_WORDS and not expr[match.end() :].lstrip().startswith("("):
            names.add(match[0])
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
            yield variable["name"], inner[1] if inner else query


@pytest.mark.pure
def test_the_promql_name_parser_finds_metric_names_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_b_bucket{x=~"$y", z="w"}[$__rate_interval]))) / on(k) c'
    )
    assert metric_names(expr) == {"a_b_bucket", "c"}
    assert metric_names("sum without (kind) (gauge_x) or vector(0)") == {"gauge_x"}


@pytest.mark.pure
def test_the_dashboard_queries_only_metrics_the_server_exports_and_shows_them_all() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    [source] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    families = exported_gifting_families()
    exported = {name + suffix for name, kind in families.items() for suffix in _SUFFIXES[kind]}
    used: set[str] = set()
    for where, expr in dashboard_queries(dashboard):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} are not exported"
        used |= names
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    # Every metric the server exports has a panel.
    assert {name for name in families if not any(n.startswith(name) for n in used)} == set()
    panel_ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))


@pytest.mark.pure
def test_every_metric_is_named_by_prometheus_conventions() -> None:
    families = exported_gifting_families()
    assert len(families) >= 12
    for name, kind in families.items():
        assert re.fullmatch("gifting_[a-z_]+", name), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
    helps = {f.name: f.documentation for f in REGISTRY.collect() if f.name in families}
    assert all(len(text) > 20 for text in helps.values()), helps
