"""Live rooms over WebSocket: two real server processes on one engine, real clients.

Every count is checked against what was sent: each viewer's gift events add up to the gifts
acknowledged, each event arrives once, on whichever process the viewer is connected to.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import Engine
from tests.support import Api, ServerProcess, running_server, server_env, unique
from tests.wsclient import JSON, MSGPACK, RoomSocket

pytestmark = pytest.mark.anyio

COMBO_WINDOW_MS = 600
PRESENCE_INTERVAL_MS = 400
HUB_ENV = {
    "GIFTING_COMBO_WINDOW_MS": str(COMBO_WINDOW_MS),
    "GIFTING_PRESENCE_TTL_S": "1.5",
    "GIFTING_GIFT_RATE": "1000",
    "GIFTING_GIFT_BURST": "1000",
    "GIFTING_ROOM_STREAM_LEN": "100",
    "GIFTING_WS_BUFFER_BYTES": "16384",
    "GIFTING_ALLOWED_ORIGINS": "https://live.example",
    "GIFTING_PRESENCE_INTERVAL_MS": str(PRESENCE_INTERVAL_MS),
}


@dataclass
class Hub:
    a: ServerProcess
    b: ServerProcess
    api: Api

    def url(self, which: str) -> str:
        return (self.a if which == "a" else self.b).base_url

    async def join(self, which: str, room_id: str, user_id: str, **options: object) -> RoomSocket:
        sock = await RoomSocket.open(self.url(which), room_id, self.api.token(user_id), **options)  # type: ignore[arg-type]
        await sock.welcome()
        return sock


@pytest.fixture(scope="module")
def hub(engine: Engine, key_prefix: str, logs: Path) -> Iterator[Hub]:
    env = server_env(engine.url, key_prefix, **HUB_ENV)
    with (
        running_server(env, logs) as a,
        running_server(env, logs) as b,
        httpx.Client(base_url=a.base_url, timeout=10) as http,
    ):
        yield Hub(a, b, Api(http))


@pytest.fixture
def live(hub: Hub) -> tuple[str, str]:
    creator = unique("c")
    return creator, hub.api.open_room(creator)


async def reply(sock: RoomSocket) -> dict[str, Any]:
    """The next frame that answers the client (room batches, such as viewer counts, skipped)."""
    return await sock.wait_for(lambda frame: frame["type"] != "batch", new=True)


def funded(api: Api, package: str = "us_550") -> str:
    user = unique("v")
    api.buy(user, package)
    return user


async def test_welcome_carries_the_room_and_its_snapshot_in_both_subprotocols(
    hub: Hub, live: tuple[str, str]
) -> None:
    creator, room_id = live
    token = hub.api.token(unique("v"))
    json_sock = await RoomSocket.open(hub.a.base_url, room_id, token, subprotocol=JSON)
    packed = await RoomSocket.open(hub.b.base_url, room_id, token, subprotocol=MSGPACK, token_in_header=True)
    default = await RoomSocket.open(hub.a.base_url, room_id, token, subprotocol=None)
    assert json_sock.ws.subprotocol == JSON and packed.ws.subprotocol == MSGPACK
    assert default.ws.subprotocol is None
    for sock in (json_sock, packed, default):
        welcome = await sock.welcome()
        assert welcome["room_id"] == room_id and welcome["room"]["creator_id"] == creator
        assert welcome["resumed"] is False and welcome["epoch"] == welcome["room"]["epoch"]
        assert set(welcome["snapshot"]) == {"viewers", "leaderboard", "goal", "recent", "likes", "followers"}
        await sock.close()


async def test_gifts_over_websocket_and_http_reach_every_viewer_on_both_processes(
    hub: Hub, live: tuple[str, str]
) -> None:
    creator, room_id = live
    senders = [funded(hub.api) for _ in range(3)]
    watchers = [await hub.join("ab"[i % 2], room_id, unique("w")) for i in range(4)]
    gifters = [await hub.join("ab"[i % 2], room_id, sender) for i, sender in enumerate(senders)]
    sent = 0
    for round_ in range(4):
        for sender, sock in zip(senders, gifters, strict=True):
            ack = await sock.gift("rose", count=round_ + 1)
            assert ack["type"] == "gift_ack", ack
            sent += round_ + 1
            assert hub.api.gift(sender, room_id, "finger_heart", count=2).status_code == 200
            sent += 2
    for sock in watchers + gifters:
        events = await sock.wait_gift_count(sent)
        assert sum(e["count"] for e in events) == sent
        assert len({e["event_id"] for e in events}) == len(events) == 24
    # The sender's balance reaches the sender's own connections, nobody else's.
    spent = (1 + 2 + 3 + 4) * 1 + 4 * 2 * 5  # roses at 1 coin, finger hearts at 5
    assert hub.api.coins(senders[0]) == 550 - spent
    await gifters[0].wait_for(lambda f: f["type"] == "balance" and f["coins"] == 550 - spent)
    assert not [f for f in watchers[0].frames if f["type"] in ("balance", "gift_ack")]
    # The creator's share is floored per gift: roses of 1, 2, 3, 4 coins earn 0, 1, 1, 2.
    assert hub.api.earnings(creator)["pending"] == 3 * (0 + 1 + 1 + 2 + 4 * 5)
    for sock in watchers + gifters:
        await sock.close()


async def test_a_gift_ack_and_its_event_agree_with_the_ledger(hub: Hub, live: tuple[str, str]) -> None:
    _, room_id = live
    sender = funded(hub.api)
    sock = await hub.join("a", room_id, sender)
    ack = await sock.gift("perfume", count=3, key="ack-1")
    assert ack == {
        "type": "gift_ack",
        "idempotency_key": "ack-1",
        "gift_event_id": ack["gift_event_id"],
        "coins": 550 - 60,
    }
    again = await sock.gift("perfume", count=3, key="ack-1")
    assert again["gift_event_id"] == ack["gift_event_id"] and again["coins"] == 490
    [event] = await sock.wait_gift_count(3)
    assert event["event_id"] == ack["gift_event_id"] and event["sender"]["id"] == sender
    assert hub.api.coins(sender) == 490
    assert [e["ref"] for e in hub.api.ledger(sender) if e["kind"] == "gift"] == [ack["gift_event_id"]]
    await sock.close()


async def test_a_streak_of_gifts_is_one_combo_closed_once_when_the_sender_stops(
    hub: Hub, live: tuple[str, str]
) -> None:
    _, room_id = live
    sender = funded(hub.api)
    gifter = await hub.join("a", room_id, sender)
    watcher = await hub.join("b", room_id, unique("w"))
    for count in (1, 2, 3):
        assert (await gifter.gift("rose", count))["type"] == "gift_ack"
    assert (await gifter.gift("finger_heart", 1))["type"] == "gift_ack"  # another gift: a new streak
    assert (await gifter.gift("lion", 1))["type"] == "error"  # 29,999 coins: refused, no event
    assert (await gifter.gift("galaxy", 1))["type"] == "error"

    def closes_heart(frame: dict[str, Any]) -> bool:
        return any(
            e["type"] == "combo_end" and e["gift_id"] == "finger_heart" for e in frame.get("events", ())
        )

    await watcher.wait_for(closes_heart)
    gifts = watcher.events("gift")
    assert [(e["gift_id"], e["count"], e["combo"]) for e in gifts] == [
        ("rose", 1, 1),
        ("rose", 2, 3),
        ("rose", 3, 6),
        ("finger_heart", 1, 1),
    ]
    ends = [(e["gift_id"], e["combo"], e["sender"]["id"]) for e in watcher.events("combo_end")]
    assert ends == [("rose", 6, sender), ("finger_heart", 1, sender)]
    # Both processes watched the window pass; the engine let only one close each streak.
    await gifter.wait_for(closes_heart)
    assert [(e["gift_id"], e["combo"]) for e in gifter.events("combo_end")] == [
        ("rose", 6),
        ("finger_heart", 1),
    ]
    await gifter.close()
    await watcher.close()


async def test_leaderboard_goal_and_viewers_follow_the_room(hub: Hub, live: tuple[str, str]) -> None:
    creator, room_id = live
    big, small = funded(hub.api, "us_1250"), funded(hub.api)
    watcher = await hub.join("a", room_id, unique("w"))
    goal = hub.api.http.put(
        f"/v1/rooms/{room_id}/goal", json={"coins": 500}, headers=hub.api.auth(creator, "creator")
    )
    assert goal.status_code == 200 and goal.json()["goal"] == {"target": 500, "progress": 0}
    await watcher.wait_event({"type": "goal", "target": 500, "progress": 0})
    assert hub.api.gift(small, room_id, "doughnut").status_code == 200
    assert hub.api.gift(big, room_id, "corgi").status_code == 200
    board = await watcher.wait_for(
        lambda f: any(e["type"] == "leaderboard" and len(e["leaderboard"]) == 2 for e in f.get("events", []))
    )
    [event] = [e for e in board["events"] if e["type"] == "leaderboard"]
    assert [(row["id"], row["coins"]) for row in event["leaderboard"]] == [(big, 299), (small, 30)]
    await watcher.wait_event({"type": "goal", "target": 500, "progress": 329})

    others = [await hub.join("ab"[i % 2], room_id, unique("w")) for i in range(3)]
    await watcher.wait_event({"type": "viewers", "viewers": 4})
    for sock in others:
        await sock.close()
    await watcher.wait_event({"type": "viewers", "viewers": 1}, new=True)
    snapshot = hub.api.http.get(f"/v1/rooms/{room_id}").json()
    assert snapshot["snapshot"]["goal"] == {"target": 500, "progress": 329}
    assert snapshot["snapshot"]["viewers"] == 1
    assert [row["id"] for row in snapshot["snapshot"]["leaderboard"]] == [big, small]
    listed = {r["room_id"]: r for r in hub.api.http.get("/v1/rooms").json()["rooms"]}
    assert listed[room_id]["viewers"] == 1
    bad = hub.api.http.put(
        f"/v1/rooms/{room_id}/goal", json={"coins": 0}, headers=hub.api.auth(creator, "creator")
    )
    assert bad.status_code == 422
    stranger = hub.api.http.put(
        f"/v1/rooms/{room_id}/goal", json={"coins": 9}, headers=hub.api.auth(unique("c"), "creator")
    )
    assert stranger.status_code == 403
    await watcher.close()


async def test_viewers_of_a_crashed_process_leave_the_count(
    hub: Hub, live: tuple[str, str], engine: Engine, key_prefix: str, logs: Path
) -> None:
    _, room_id = live
    watcher = await hub.join("a", room_id, unique("w"))
    with running_server(server_env(engine.url, key_prefix, **HUB_ENV), logs) as doomed:
        doomed_socks = [
            await RoomSocket.open(doomed.base_url, room_id, hub.api.token(unique("w"))) for _ in range(3)
        ]
        for sock in doomed_socks:
            await sock.welcome()
        await watcher.wait_event({"type": "viewers", "viewers": 4})
        assert doomed.process is not None
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait()
        # No goodbye from the dead process: its presence expires (TTL 1.5 s in these tests).
        await watcher.wait_event({"type": "viewers", "viewers": 1}, new=True)
    await watcher.close()


async def test_a_viewer_resumes_with_exactly_the_events_it_missed(hub: Hub, live: tuple[str, str]) -> None:
    _, room_id = live
    sender = funded(hub.api)
    viewer = unique("w")
    first = await hub.join("a", room_id, viewer)
    for _ in range(3):
        assert hub.api.gift(sender, room_id, "rose").status_code == 200
    seen = await first.wait_gift_count(3)
    last = next(f for f in reversed(first.frames) if f["type"] in ("batch", "welcome"))
    epoch = (await first.welcome())["epoch"]
    await first.close()

    missed_ids = []
    for count in (1, 2, 3, 4):
        reply = hub.api.gift(sender, room_id, "finger_heart", count)
        assert reply.status_code == 200
        missed_ids.append(reply.json()["gift_event_id"])
    # Resume on the other process: same log, same offsets.
    again = await RoomSocket.open(
        hub.b.base_url, room_id, hub.api.token(viewer), since=last["offset"], epoch=epoch
    )
    welcome = await again.welcome()
    assert welcome["resumed"] is True and again.frames[0] is welcome
    events = await again.wait_gift_count(10)
    assert [e["event_id"] for e in events] == missed_ids
    assert not {e["event_id"] for e in events} & {e["event_id"] for e in seen}
    assert not [f for f in again.frames if f["type"] == "resync"]
    await again.close()


async def test_a_resume_it_cannot_answer_exactly_is_a_resync_and_a_fresh_welcome(
    hub: Hub, live: tuple[str, str]
) -> None:
    _, room_id = live
    sender = funded(hub.api, "us_1250")
    token = hub.api.token(unique("w"))
    first = await RoomSocket.open(hub.a.base_url, room_id, token)
    welcome = await first.welcome()
    await first.close()
    epoch, offset = welcome["epoch"], welcome["offset"]
    for since, wrong_epoch in (
        (offset, "other-epoch"),
        ("not-an-offset", epoch),
        ("99999999999999-0", epoch),
    ):
        sock = await RoomSocket.open(hub.a.base_url, room_id, token, since=since, epoch=wrong_epoch)
        resync = await sock.recv()
        assert resync["type"] == "resync" and resync["reason"]
        fresh = await sock.recv()
        assert fresh["type"] == "welcome" and fresh["resumed"] is False
        await sock.close()
    # Push the offset out of the bounded stream (100 entries in these tests), then resume.
    for _ in range(260):
        assert hub.api.gift(sender, room_id, "rose").status_code == 200
    sock = await RoomSocket.open(hub.b.base_url, room_id, token, since=offset, epoch=epoch)
    resync = await sock.recv()
    assert resync["type"] == "resync" and "window" in resync["reason"]
    assert (await sock.recv())["type"] == "welcome"
    await sock.close()


async def test_bad_frames_get_an_error_frame_and_debit_nothing(hub: Hub, live: tuple[str, str]) -> None:
    _, room_id = live
    sender = funded(hub.api)
    sock = await hub.join("a", room_id, sender)
    bad_gifts: list[dict[str, Any]] = [
        {"type": "gift", "gift_id": "rose", "count": 0, "idempotency_key": "b1"},
        {"type": "gift", "gift_id": "rose", "count": -3, "idempotency_key": "b2"},
        {"type": "gift", "gift_id": "rose", "count": 1.5, "idempotency_key": "b3"},
        {"type": "gift", "gift_id": "rose", "count": 10**12, "idempotency_key": "b4"},
        {"type": "gift", "gift_id": "rose", "count": 1},
        {"type": "gift", "gift_id": "rose", "count": 1, "idempotency_key": "b6", "extra": 1},
        {"type": "teleport"},
        {"type": "ping", "x": 1},
        {"gift_id": "rose"},
    ]
    for frame in bad_gifts:
        await sock.send(frame)
        error = await reply(sock)
        assert error["type"] == "error" and error["code"] == "invalid_request", (frame, error)
    unknown = await sock.gift("unobtainium")
    assert (unknown["type"], unknown["code"]) == ("error", "unknown_gift")
    await sock.send({"type": "ping"})
    assert (await reply(sock)) == {"type": "pong"}
    assert hub.api.coins(sender) == 550
    assert not sock.events("gift")
    # The tenth invalid frame within a minute closes the connection.
    await sock.ws.send("nope")
    assert (await reply(sock))["code"] == "invalid_request"
    assert await sock.closed() == (4400, "too many invalid frames")
    assert hub.api.coins(sender) == 550


@pytest.mark.parametrize("subprotocol", [JSON, MSGPACK])
async def test_a_gift_frame_refused_by_its_checks_is_answered_with_its_key(
    hub: Hub, live: tuple[str, str], subprotocol: str
) -> None:
    _, room_id = live
    sender = funded(hub.api)
    sock = await hub.join("a", room_id, sender, subprotocol=subprotocol)
    gift = {"type": "gift", "gift_id": "rose", "count": 1}
    wrongs: list[dict[str, Any]] = [{"count": -5}, {"count": 1.5}, {"extra": 1}, {"gift_id": "no such id!"}]
    for n, wrong in enumerate(wrongs):
        key = f"tap-{n}:refused"
        await sock.send({**gift, "idempotency_key": key, **wrong})
        error = await reply(sock)
        answered = (error["type"], error["code"], error.get("idempotency_key"))
        assert answered == ("error", "invalid_request", key), wrong
    # A key that is no string, or does not match the key pattern, is not echoed back.
    for unreadable in (7, "two words", "k" * 129):
        await sock.send({**gift, "count": -5, "idempotency_key": unreadable})
        error = await reply(sock)
        assert error["code"] == "invalid_request" and "idempotency_key" not in error, unreadable
    assert hub.api.coins(sender) == 550
    assert not sock.events("gift")
    await sock.close()


async def test_frames_that_are_not_json_objects_are_invalid(hub: Hub, live: tuple[str, str]) -> None:
    _, room_id = live
    sender = funded(hub.api)
    sock = await hub.join("b", room_id, sender)
    for raw in ("not json", "[1, 2]", "[" * 1500 + "]" * 1500, '"text"', b'{"type": "ping"'):
        await sock.ws.send(raw)
        assert (await reply(sock))["code"] == "invalid_request", raw
    await sock.ws.send(b'{"type": "ping"}')  # JSON in a binary frame is read the same way
    assert (await reply(sock)) == {"type": "pong"}
    assert hub.api.coins(sender) == 550
    await sock.close()


async def test_msgpack_frames_are_checked_the_same_way(hub: Hub, live: tuple[str, str]) -> None:
    _, room_id = live
    sender = funded(hub.api)
    sock = await hub.join("b", room_id, sender, subprotocol=MSGPACK)
    await sock.ws.send(b"\xc1\xff\x00")  # 0xc1 is never valid msgpack
    assert (await reply(sock))["code"] == "invalid_request"
    await sock.ws.send('{"type": "ping"}')  # a text frame on a binary subprotocol
    assert (await reply(sock))["code"] == "invalid_request"
    await sock.send({"type": "gift", "gift_id": "rose", "count": "1", "idempotency_key": "m1"})
    assert (await reply(sock))["code"] == "invalid_request"
    ack = await sock.gift("rose", 2, key="m2")
    assert ack["type"] == "gift_ack" and ack["coins"] == 548
    await sock.close()


async def test_an_oversized_frame_closes_the_connection_with_1009(hub: Hub, live: tuple[str, str]) -> None:
    _, room_id = live
    sender = funded(hub.api)
    sock = await hub.join("a", room_id, sender)
    big = {"type": "gift", "gift_id": "rose", "count": 1, "idempotency_key": "x" * 100, "pad": "y" * 5000}
    await sock.send(big)
    code, _ = await sock.closed()
    assert code == 1009
    assert hub.api.coins(sender) == 550


@pytest.mark.parametrize(
    ("token", "room", "code", "error"),
    [
        (None, "live", 4401, "unauthorized"),
        ("garbage", "live", 4401, "unauthorized"),
        ("viewer", "missing", 4404, "room_not_found"),
        ("viewer", "bad id!", 4400, "invalid_request"),
    ],
)
async def test_refused_connections_get_an_error_frame_and_a_close_code(
    hub: Hub, live: tuple[str, str], token: str | None, room: str, code: int, error: str
) -> None:
    room_id = {"live": live[1], "missing": unique("r"), "bad id!": "bad%20id!"}[room]
    jwt = hub.api.token(unique("w")) if token == "viewer" else token
    sock = await RoomSocket.open(hub.a.base_url, room_id, jwt)
    frame = await sock.recv()
    assert frame["type"] == "error" and frame["code"] == error
    assert (await sock.closed())[0] == code


async def test_the_origin_allow_list_refuses_other_sites_at_the_handshake(
    hub: Hub, live: tuple[str, str]
) -> None:
    _, room_id = live
    token = hub.api.token(unique("w"))
    with pytest.raises(InvalidStatus) as refused:
        await RoomSocket.open(hub.a.base_url, room_id, token, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    allowed = await RoomSocket.open(hub.a.base_url, room_id, token, origin="https://live.example")
    assert (await allowed.welcome())["room_id"] == room_id
    await allowed.close()


async def test_ending_the_live_broadcasts_room_end_then_closes_cleanly(
    hub: Hub, live: tuple[str, str]
) -> None:
    creator, room_id = live
    sender = funded(hub.api)
    gifter = await hub.join("a", room_id, sender)
    watchers = [await hub.join(which, room_id, unique("w")) for which in "ab"]
    assert (await gifter.gift("rose"))["type"] == "gift_ack"
    assert hub.api.end_room(creator, room_id).status_code == 200
    for sock in [gifter, *watchers]:
        assert await sock.closed() == (1000, "the live has ended")
        kinds = [e["type"] for e in sock.events()]
        # The open combo closes first, the room_end comes last.
        assert kinds[-1] == "room_end" and kinds.count("room_end") == 1
        assert kinds.count("combo_end") == 1 and kinds.index("gift") < kinds.index("combo_end")
        assert sock.gift_count() == 1
    late = await RoomSocket.open(hub.b.base_url, room_id, hub.api.token(unique("w")))
    assert (await late.recv())["code"] == "room_ended"
    assert (await late.closed())[0] == 4410
    assert hub.api.gift(sender, room_id, "rose").json()["error"]["code"] == "room_ended"


async def test_gift_frames_racing_the_end_of_the_live_are_each_answered_before_the_close(
    hub: Hub, live: tuple[str, str]
) -> None:
    """A burst of gift frames is still being answered when the creator ends the live: every
    frame gets exactly one answer before the close, and the acks are exactly what was charged."""
    creator, room_id = live
    sender = funded(hub.api)
    sock = await hub.join("a", room_id, sender)
    keys = [unique("k") for _ in range(500)]
    for key in keys:
        await sock.send({"type": "gift", "gift_id": "rose", "count": 1, "idempotency_key": key})
    await sock.answer(keys[0])  # the server is working through the burst: end the live now
    assert hub.api.end_room(creator, room_id).status_code == 200
    assert await sock.closed() == (1000, "the live has ended")
    answers: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for frame in sock.frames:
        if frame["type"] in ("gift_ack", "error"):
            answers[frame["idempotency_key"]].append(frame)
    assert all(len(answered) == 1 for answered in answers.values()), {
        key: answered for key, answered in answers.items() if len(answered) != 1
    }
    acked = [answered[0] for answered in answers.values() if answered[0]["type"] == "gift_ack"]
    refused = [answered[0] for answered in answers.values() if answered[0]["type"] == "error"]
    assert acked and refused, "the end must land in the middle of the burst"
    assert {frame["code"] for frame in refused} == {"room_ended"}
    # Roses cost 1 coin: the wallet moved by exactly the gifts acknowledged, no more.
    charged = [e["ref"] for e in hub.api.ledger(sender) if e["kind"] == "gift"]
    assert sorted(charged) == sorted(frame["gift_event_id"] for frame in acked)
    assert hub.api.coins(sender) == 550 - len(acked)


async def test_a_server_shutdown_answers_the_gift_frames_it_read_before_closing_1012(
    engine: Engine, key_prefix: str, logs: Path, hub: Hub, live: tuple[str, str]
) -> None:
    """SIGTERM (a deploy, a restart) while a socket sends a burst of gift frames: the server
    answers every frame it read, in order, before its close 1012, and exactly the gifts it
    acknowledged are charged."""
    _, room_id = live
    sender = funded(hub.api)
    # The default buffer: the client reads no answer until the whole burst is sent.
    env = server_env(engine.url, key_prefix, GIFTING_GIFT_RATE="1000", GIFTING_GIFT_BURST="1000")
    with running_server(env, logs) as server:
        assert server.process is not None
        sock = await RoomSocket.open(server.base_url, room_id, hub.api.token(sender))
        await sock.welcome()
        keys = [unique("k") for _ in range(500)]
        for key in keys:
            await sock.send({"type": "gift", "gift_id": "rose", "count": 1, "idempotency_key": key})
        await sock.answer(keys[0])  # the server is working through the burst: stop it now
        server.process.send_signal(signal.SIGTERM)
        code, _ = await sock.closed()
        assert code == 1012
        await anyio.to_thread.run_sync(server.process.wait, 15)
    answers: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    for frame in sock.frames:
        if frame["type"] in ("gift_ack", "error"):
            answers[frame["idempotency_key"]].append(frame)
    answered = [key for key in keys if answers[key]]
    # Frames are read in order: the answered ones are the first ones, each answered once, and
    # each with an acknowledgement (nothing in the burst is over a limit).
    assert answered == keys[: len(answered)]
    assert all(len(answers[key]) == 1 for key in answered)
    acked = [answers[key][0] for key in answered]
    assert {frame["type"] for frame in acked} == {"gift_ack"}, acked
    # The books, read through another process once this one is gone: charged = acknowledged.
    charged = [e["ref"] for e in hub.api.ledger(sender) if e["kind"] == "gift"]
    assert sorted(charged) == sorted(frame["gift_event_id"] for frame in acked)
    assert hub.api.coins(sender) == 550 - len(acked)


async def test_a_restarting_server_names_the_window_its_viewers_spread_their_return_over(
    engine: Engine, key_prefix: str, logs: Path, hub: Hub, live: tuple[str, str]
) -> None:
    """Its 1012 asks each client to draw its first reconnect within the time the restarted
    process takes to serve them all: its WebSocket connections at GIFTING_RECONNECT_RATE a
    second. HTTP connections kept alive between requests are not among them: they do not
    come back through a handshake."""
    _, room_id = live
    env = server_env(engine.url, key_prefix, GIFTING_RECONNECT_RATE="2")
    with running_server(env, logs) as server:
        assert server.process is not None
        socks = [
            await RoomSocket.open(server.base_url, room_id, hub.api.token(unique("v"))) for _ in range(3)
        ]
        for sock in socks:
            await sock.welcome()
        # Two clients whose connections stay open, idle, after a request each.
        async with (
            httpx.AsyncClient(base_url=server.base_url) as one,
            httpx.AsyncClient(base_url=server.base_url) as other,
        ):
            for client in (one, other):
                assert (await client.get("/healthz")).status_code == 200
            server.process.send_signal(signal.SIGTERM)
            closes = [await sock.closed() for sock in socks]
        await anyio.to_thread.run_sync(server.process.wait, 15)
    # Three sockets at two a second: 1.5 s (counting the two HTTP connections: 2.5 s).
    assert closes == [(1012, "the server is restarting; reconnect within 1500 ms")] * 3


async def gift_and_its_batch(sock: RoomSocket) -> None:
    """Send a rose and read until the batch that carries it."""
    ack = await sock.gift("rose")
    assert ack["type"] == "gift_ack", ack
    await sock.wait_for(lambda f: ack["gift_event_id"] in [e.get("event_id") for e in f.get("events", ())])


async def test_a_gift_frame_right_after_the_end_is_refused_as_over_http(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    """Between the end of the live and the hub's next read of the room, a gift frame is
    refused with room_ended, as the same gift over HTTP is, and debits nothing."""
    env = server_env(engine.url, key_prefix, **{**HUB_ENV, "GIFTING_TICK_MS": "1000"})
    with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = Api(http)
        creator = unique("c")
        room_id = api.open_room(creator)
        sender = funded(api)
        sock = await RoomSocket.open(server.base_url, room_id, api.token(sender))
        await sock.welcome()
        # The hub reads the room's stream, then waits out the rest of its 1 s tick. The second
        # gift's batch comes from a read that started after the first one's: the hub has
        # nearly a second left to wait before it reads the room_end.
        for _ in range(2):
            await gift_and_its_batch(sock)
        assert api.end_room(creator, room_id).status_code == 200
        answer = await sock.gift("rose", key="after-the-end")
        over_http = api.gift(sender, room_id, "rose", key="after-the-end-too")
        assert over_http.status_code == 409 and over_http.json()["error"]["code"] == "room_ended"
        assert answer["type"] == "error" and answer["code"] == "room_ended", answer
        assert api.coins(sender) == 550 - 2
        assert len([e for e in api.ledger(sender) if e["kind"] == "gift"]) == 2
        assert await sock.closed() == (1000, "the live has ended")


async def test_a_flood_of_gifts_from_one_user_is_rate_limited_before_any_coin_moves(
    api: Api, room: tuple[str, str]
) -> None:
    """The session server keeps the default limit: 20 gifts a second, bursts of 40."""
    _, room_id = room
    sender = funded(api)
    replies = [api.gift(sender, room_id, "rose") for _ in range(60)]
    limited = [r for r in replies if r.status_code == 429]
    assert limited and {r.json()["error"]["code"] for r in limited} == {"rate_limited"}
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    accepted = sum(r.status_code == 200 for r in replies)
    assert accepted + len(limited) == 60
    assert api.coins(sender) == 550 - accepted


async def test_a_viewer_that_stops_reading_is_dropped_and_the_others_get_every_gift(
    hub: Hub, live: tuple[str, str]
) -> None:
    """The hub servers here allow 16 KiB of unsent data per connection."""
    _, room_id = live
    watcher = await hub.join("a", room_id, unique("w"))
    stalled = raw_upgrade(hub.a.port, f"/v1/rooms/{room_id}/ws?token={hub.api.token(unique('w'))}", 4096)
    joined = await watcher.wait_event({"type": "viewers", "viewers": 2})
    senders = [funded(hub.api, "us_1250") for _ in range(4)]
    sent = 0
    for i in range(400):
        assert hub.api.gift(senders[i % 4], room_id, "rose").status_code == 200
        sent += 1
    events = await watcher.wait_gift_count(sent)
    assert len({e["event_id"] for e in events}) == sent
    await watcher.wait_event({"type": "viewers", "viewers": 1}, after=watcher.frames.index(joined))
    # The stalled connection was cut: reading now ends in EOF or a reset, well short of 400 gifts.
    received = read_until_closed(stalled)
    assert received.count(b'"type":"gift"') < sent
    await watcher.close()


def raw_upgrade(port: int, path: str, receive_buffer: int | None = None) -> socket.socket:
    """A bare WebSocket handshake on a plain socket, for peers that misbehave afterwards."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (EOF or reset)."""
    sock.settimeout(10)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    sock.close()
    return received


async def test_a_peer_that_answers_no_ping_is_closed_and_a_live_one_stays(
    engine: Engine, key_prefix: str, logs: Path, live: tuple[str, str], hub: Hub
) -> None:
    _, room_id = live
    env = server_env(engine.url, key_prefix, GIFTING_WS_PING_S="0.3")
    with running_server(env, logs) as server:
        alive = await RoomSocket.open(server.base_url, room_id, hub.api.token(unique("w")))
        dead = raw_upgrade(server.port, f"/v1/rooms/{room_id}/ws?token={hub.api.token(unique('w'))}")
        # Read the silent peer's socket off the event loop, so the live client answers its pings.
        received = await anyio.to_thread.run_sync(read_until_closed, dead)
        # A close frame with 1011 (0x03f3) after the unanswered ping.
        assert b"\x88" in received and b"\x03\xf3" in received
        await alive.send({"type": "ping"})
        assert await alive.wait_for(lambda f: f["type"] == "pong", new=True) == {"type": "pong"}
        await alive.close()


async def test_many_viewers_joining_a_room_at_once_share_one_view_of_it(
    hub: Hub, live: tuple[str, str]
) -> None:
    _, room_id = live
    sender = funded(hub.api)
    socks = await asyncio.gather(
        *(RoomSocket.open(hub.url("ab"[i % 2]), room_id, hub.api.token(unique("w"))) for i in range(30))
    )
    welcomes = [await sock.welcome() for sock in socks]
    assert {w["epoch"] for w in welcomes} == {welcomes[0]["epoch"]}
    await socks[0].wait_event({"type": "viewers", "viewers": 30})
    # The sender's two connections, one per process, both get the balance; nobody else does.
    mine = [await hub.join(which, room_id, sender) for which in "ab"]
    reply = hub.api.gift(sender, room_id, "doughnut", 2)
    assert reply.status_code == 200
    for sock in mine:
        await sock.wait_for(lambda f: f == {"type": "balance", "coins": 490})
    for sock in socks:
        [event] = await sock.wait_gift_count(2)
        assert event["event_id"] == reply.json()["gift_event_id"]
        assert not [f for f in sock.frames if f["type"] == "balance"]
    for sock in [*socks, *mine]:
        await sock.close()


async def test_a_join_storm_brings_a_viewer_one_presence_update_per_interval_and_the_exact_count(
    hub: Hub, live: tuple[str, str]
) -> None:
    """Viewers joining on both processes over many ticks: the watcher's viewer counts and joins
    come at most once per presence interval (from its own process), the joins merged and all
    counted; every count a viewer ends up with is the room's."""
    _, room_id = live
    sender = funded(hub.api)
    watcher = await hub.join("a", room_id, unique("w"))
    arrivals: list[tuple[float, dict[str, Any]]] = []
    seen = asyncio.Condition()

    async def read() -> None:
        while True:
            frame = await watcher.recv(60)
            async with seen:
                arrivals.append((time.monotonic(), frame))
                seen.notify_all()

    def presence(frame: dict[str, Any]) -> list[dict[str, Any]]:
        return [e for e in frame.get("events", ()) if e["type"] in ("viewers", "joins")]

    async def shown(count: int, after: int = 0) -> None:
        async with seen:
            await asyncio.wait_for(
                seen.wait_for(
                    lambda: any(
                        {"type": "viewers", "viewers": count} in presence(f) for _, f in arrivals[after:]
                    )
                ),
                10,
            )

    reader = asyncio.create_task(read())
    joiners: list[RoomSocket] = []
    gifts: list[str] = []
    try:
        for _ in range(4):
            # Six viewers at once, on both processes: their counts and joins reach the
            # watcher's process over several ticks. A gift in each round is not held.
            reply = hub.api.gift(sender, room_id, "doughnut")
            assert reply.status_code == 200
            gifts.append(reply.json()["gift_event_id"])
            joiners += await asyncio.gather(*(hub.join("ab"[i % 2], room_id, unique("j")) for i in range(6)))
            await shown(1 + len(joiners))
        async with seen:
            await asyncio.wait_for(
                seen.wait_for(
                    lambda: (
                        sum(e["count"] for _, f in arrivals for e in presence(f) if e["type"] == "joins")
                        >= 1 + len(joiners)
                    )
                ),
                10,
            )
        # The watcher saw 13 once already, after the second round: only a later count counts.
        closing, remaining = len(arrivals), joiners[12:]
        marks = [len(sock.frames) for sock in remaining]
        for sock in joiners[:12]:
            await sock.close()
        await shown(13, after=closing)
        # Each remaining viewer's count comes to the room's. None of them leaves before all have
        # seen it: a count that lasts less than a presence interval may never be shown.
        for sock, mark in zip(remaining, marks, strict=True):
            await sock.wait_event({"type": "viewers", "viewers": 13}, after=mark)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        for sock in [*joiners, watcher]:
            await sock.close()
    updates = [at for at, frame in arrivals if presence(frame)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(updates)]
    assert len(updates) >= 4 and min(gaps) >= PRESENCE_INTERVAL_MS / 1000 / 2, gaps
    joins = [e for _, frame in arrivals for e in presence(frame) if e["type"] == "joins"]
    assert sum(e["count"] for e in joins) == 1 + 24  # the watcher's own join too
    assert all(0 < len(e["users"]) <= 10 for e in joins)
    assert [e["event_id"] for _, f in arrivals for e in f.get("events", ()) if e["type"] == "gift"] == gifts


async def test_tokens_never_reach_the_server_log(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    _, room_id = room
    token = api.token(unique("w"))
    for in_header in (False, True):
        sock = await RoomSocket.open(server.base_url, room_id, token, token_in_header=in_header)
        await sock.welcome()
        await sock.close()
    log = server.log_path.read_text()
    assert f"/v1/rooms/{room_id}/ws?token=<redacted>" in log
    assert token not in log and token.split(".")[2] not in log
