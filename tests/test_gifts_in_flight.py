"""A room socket's frames handled together: the gifts a connection sends at once share the
engine's round trips, and every frame is still answered in the order it came."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import Api, ServerProcess, unique
from tests.test_metrics import scrape
from tests.wsclient import RoomSocket

pytestmark = pytest.mark.anyio

ANSWERS = ("gift_ack", "error", "chat_ack", "pong")


def gift(key: str, gift_id: str = "rose", count: int = 1) -> dict[str, Any]:
    return {"type": "gift", "gift_id": gift_id, "count": count, "idempotency_key": key}


async def eventually(check: Callable[[], bool], wait_s: float = 10) -> None:
    deadline = time.monotonic() + wait_s
    while not check():
        assert time.monotonic() < deadline, "the check never held"
        await asyncio.sleep(0.05)


async def answers(sock: RoomSocket, total: int) -> list[dict[str, Any]]:
    """The next ``total`` answers the connection gets, in order (room batches skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < total:
        frame = await sock.recv()
        if frame["type"] in ANSWERS:
            got.append(frame)
    return got


async def test_gifts_sent_together_share_pipelines_and_are_acknowledged_in_order(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    _, room_id = room
    sender = unique("v")
    api.buy(sender)
    sock = await RoomSocket.open(server.base_url, room_id, api.token(sender))
    await sock.welcome()
    # More than a connection handles at once (32), within the sender's gift burst (40).
    keys = [unique("k") for _ in range(36)]
    before = scrape(server)
    sock.send_together([gift(key) for key in keys])
    acks = await answers(sock, len(keys))
    after = scrape(server)
    await sock.close()

    assert [(a["type"], a["idempotency_key"]) for a in acks] == [("gift_ack", key) for key in keys]
    assert [a["coins"] for a in acks] == list(range(549, 549 - len(keys), -1))
    pipelines = after.since(before, "gifting_engine_pipelines_total")
    calls = after.since(before, "gifting_engine_pipelined_calls_total")
    # One at a time, each gift takes three round trips of its own (the room check, the debit,
    # the delivery): 108 pipelines. Handled together, the gifts share them.
    assert calls >= 3 * len(keys)
    assert pipelines <= len(keys) / 3, (pipelines, calls)


async def test_mixed_frames_are_answered_in_the_order_they_came(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    _, room_id = room
    sender = unique("v")
    api.buy(sender)  # 550 coins
    sock = await RoomSocket.open(server.base_url, room_id, api.token(sender))
    await sock.welcome()
    frames: list[dict[str, Any]] = [
        gift("g1"),
        {"type": "chat", "text": "hello", "client_id": "c1"},
        {"type": "teleport"},
        gift("g2", "no_such_gift"),
        {"type": "ping"},
        gift("g3", "corgi", 5),  # 1,495 coins: more than the sender has
        gift("g4", "hand_hearts"),
        {"type": "like", "count": 0},
        {"type": "chat", "text": "", "client_id": "c2"},
        gift("g5"),
        {"type": "chat", "text": "bye", "client_id": "c3"},
    ]
    sock.send_together(frames)
    got = await answers(sock, 11)
    await sock.close()

    def summary(frame: dict[str, Any]) -> tuple[str, str | None, str | None]:
        return (frame["type"], frame.get("code"), frame.get("idempotency_key") or frame.get("client_id"))

    assert [summary(frame) for frame in got] == [
        ("gift_ack", None, "g1"),
        ("chat_ack", None, "c1"),
        ("error", "invalid_request", None),
        ("error", "unknown_gift", "g2"),
        ("pong", None, None),
        ("error", "insufficient_coins", "g3"),
        ("gift_ack", None, "g4"),
        ("error", "invalid_request", None),
        ("error", "invalid_request", "c2"),
        ("gift_ack", None, "g5"),
        ("chat_ack", None, "c3"),
    ]


async def test_gifts_in_flight_when_the_client_closes_are_carried_through_and_replay_by_key(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    sender = unique("v")
    api.buy(sender)  # 550 coins
    sock = await RoomSocket.open(server.base_url, room_id, api.token(sender))
    await sock.welcome()
    keys = [unique("k") for _ in range(5)]
    sock.send_together([gift(key, "hand_hearts") for key in keys])  # 100 coins each
    await sock.close()  # at once, before any answer

    # Every gift the server took is debited once and delivered: a retry by its key answers
    # with its first outcome and charges nothing more.
    for key in keys:
        reply = api.gift(sender, room_id, "hand_hearts", 1, key)
        assert reply.status_code == 200, reply.text
    assert api.coins(sender) == 50
    assert len([entry for entry in api.ledger(sender) if entry["kind"] == "gift"]) == 5
    await eventually(lambda: api.earnings(creator)["pending"] == 250)


async def test_a_handshake_into_a_room_served_here_asks_the_engine_everything_in_one_round_trip(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    """The address's rate, the user's connection slot (and the user's name, if the token
    does not give it) and whether the creator banned the user go out together; the join
    then needs no engine call of its own."""
    _, room_id = room
    watcher = await RoomSocket.open(server.base_url, room_id, api.token(unique("w")))
    await watcher.welcome()  # the room is served here: its creator is known
    tokens = [api.token(unique("w")) for _ in range(20)]
    socks = []
    before = scrape(server)
    for token in tokens:
        sock = await RoomSocket.open(server.base_url, room_id, token)
        assert (await sock.welcome())["type"] == "welcome"
        socks.append(sock)
    after = scrape(server)
    for sock in socks:
        await sock.close()
    await watcher.close()
    pipelines = after.since(before, "gifting_engine_pipelines_total")
    calls = after.since(before, "gifting_engine_pipelined_calls_total")
    assert calls == 3 * len(tokens)  # rate, slot, ban (the token names the user)
    # One each; the ban check in a round trip of its own made it two each.
    assert pipelines < 1.5 * len(tokens), (pipelines, calls)
