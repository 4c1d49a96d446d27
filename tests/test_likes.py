"""Likes and joins on real server processes sharing one engine: the room's like total is
exact across processes, one user's rate is capped without error frames, one engine call
per room and tick writes them, a process crash loses at most what it had not yet written,
and joins reach viewers on every process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.likes import (
    MAX_LIKES_PER_FRAME,
    NAMED_JOINS,
    TOP_LIKERS,
    Tally,
    TallyEntry,
    merge_joins,
    tick_events,
)
from server.errors import InvalidRequest
from server.hub.protocol import JSON, decode
from server.keys import KeySchema
from server.store.likes import room_likes_arguments
from tests.conftest import Engine
from tests.support import Api, ServerProcess, delete_prefix, engine_client, running_server, server_env, unique
from tests.test_metrics import Scrape, eventually, scrape
from tests.test_overlay import open_overlay, overlay_token
from tests.wsclient import RoomSocket

RATE = 15  # the default GIFTING_LIKE_RATE


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    api: Api
    prefix: str
    engine_url: str

    def total(self, room_id: str) -> int:
        """The room's like total as the engine holds it."""
        with engine_client(self.engine_url) as client:
            return int(client.hget(KeySchema(self.prefix).room(room_id).info, "likes") or 0)


@pytest.fixture(scope="module")
def pair(engine: Engine, logs: Path) -> Iterator[Pair]:
    prefix = f"{unique('lk')}:"
    # Joins every tick, so that a like shown proves every join before it shown (the held
    # joins of a presence interval: tests/test_rooms.py).
    env = server_env(engine.url, prefix, GIFTING_PRESENCE_INTERVAL_MS="0")
    with (
        running_server(env, logs) as a,
        running_server(env, logs) as b,
        httpx.Client(base_url=a.base_url, timeout=10) as http,
    ):
        yield Pair(a, b, Api(http), prefix, engine.url)
    if not engine.owned:
        delete_prefix(engine.url, prefix)


async def join(server: ServerProcess, api: Api, room_id: str, user_id: str, **options: Any) -> RoomSocket:
    sock = await RoomSocket.open(server.base_url, room_id, api.token(user_id), **options)
    assert (await sock.welcome())["type"] == "welcome"
    return sock


def like(api: Api, server: ServerProcess, user_id: str, room_id: str, count: Any) -> httpx.Response:
    return api.http.post(
        f"{server.base_url}/v1/rooms/{room_id}/likes", json={"count": count}, headers=api.auth(user_id)
    )


async def wait_total(sock: RoomSocket, total: int, wait_s: float = 10) -> dict[str, Any]:
    """The first ``likes`` event carrying ``total``."""
    frame = await sock.wait_for(
        lambda f: any(e["type"] == "likes" and e["total"] == total for e in f.get("events", ())), wait_s
    )
    [event] = [e for e in frame["events"] if e["type"] == "likes"]
    found: dict[str, Any] = event
    return found


def per_frame(sock: RoomSocket, kind: str) -> list[int]:
    return [sum(1 for e in f["events"] if e["type"] == kind) for f in sock.frames if f["type"] == "batch"]


# -- the rules of a like frame ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("count", [0, 16, 1.5, "3", True, None, -1, [3]])
async def test_a_like_frame_or_request_outside_1_to_15_is_invalid_request_and_counts_nothing(
    pair: Pair, count: Any
) -> None:
    creator = unique("c")
    room_id = pair.api.open_room(creator)
    user = unique("v")
    sock = await join(pair.a, pair.api, room_id, user)
    await sock.send({"type": "like", "count": count})
    error = await sock.wait_for(lambda f: f["type"] == "error")
    assert error["code"] == "invalid_request", error
    reply = like(pair.api, pair.a, user, room_id, count)
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", reply.text
    # A valid like afterwards is the only one counted.
    await sock.send({"type": "like", "count": 2})
    name = sock.frames[0]["you"]["name"]
    assert (await wait_total(sock, 2))["top"] == [{"id": user, "name": name, "count": 2}]
    assert pair.total(room_id) == 2
    await sock.close()


@given(count=st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=4) | st.none() | st.booleans())
def test_the_like_frame_takes_only_whole_numbers_from_1_to_15(count: Any) -> None:
    frame = '{"type":"like","count":%s}' % ("null" if count is None else repr(count).lower())
    try:
        request = decode(frame.replace("'", '"'), JSON)
    except InvalidRequest as exc:
        assert exc.code == "invalid_request"
        assert not (type(count) is int and 1 <= count <= MAX_LIKES_PER_FRAME)
    else:
        assert type(count) is int and request.count == count  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_likes_in_a_room_that_is_not_live_or_from_an_overlay_are_refused(pair: Pair) -> None:
    creator = unique("c")
    room_id = pair.api.open_room(creator)
    user = unique("v")
    assert like(pair.api, pair.a, user, "r_nosuchroom", 1).status_code == 404
    overlay = await open_overlay(pair.a, overlay_token(pair.api, creator))
    await overlay.welcome()
    await overlay.send({"type": "like", "count": 3})
    assert (await overlay.wait_for(lambda f: f["type"] == "error"))["code"] == "forbidden"
    assert pair.api.end_room(creator, room_id).status_code == 200
    reply = like(pair.api, pair.b, user, room_id, 1)
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "room_ended", reply.text
    assert pair.total(room_id) == 0
    await overlay.close()


# -- the total --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_like_total_is_exact_with_many_likers_on_two_processes(pair: Pair) -> None:
    room_id = pair.api.open_room(unique("c"))
    watcher = await join(pair.b, pair.api, room_id, unique("w"))
    likers = [unique("v") for _ in range(24)]
    flooders = [unique("f") for _ in range(6)]
    sockets = [await join((pair.a, pair.b)[i % 2], pair.api, room_id, u) for i, u in enumerate(likers)]
    accepted = 0
    for round_ in range(3):
        for i, sock in enumerate(sockets):
            # Within each user's rate (a round takes less than a second): every one is accepted.
            count = 1 + (i + round_) % 5
            await sock.send({"type": "like", "count": count})
            accepted += count
        # And floods over HTTP on both processes, whose answers say how many were accepted.
        for i, user in enumerate(flooders):
            for _ in range(3):
                reply = like(pair.api, (pair.a, pair.b)[i % 2], user, room_id, MAX_LIKES_PER_FRAME)
                assert reply.status_code == 202, reply.text
                body = reply.json()
                assert body["accepted"] + body["dropped"] == MAX_LIKES_PER_FRAME
                accepted += body["accepted"]
    last = await wait_total(watcher, accepted, wait_s=15)
    assert len(last["top"]) <= TOP_LIKERS
    assert pair.total(room_id) == accepted
    # A newcomer's welcome carries the total as of its offset, on either process: the
    # final total, or one that the tallies after its offset bring to it.
    for server in (pair.a, pair.b):
        newcomer = await join(server, pair.api, room_id, unique("n"))
        if newcomer.frames[0]["snapshot"]["likes"] != accepted:
            assert newcomer.frames[0]["snapshot"]["likes"] < accepted
            await wait_total(newcomer, accepted)
        await newcomer.close()
    assert max(per_frame(watcher, "likes")) == 1
    for sock in [watcher, *sockets]:
        await sock.close()


@pytest.mark.anyio
async def test_a_flood_from_one_user_is_capped_at_the_rate_without_error_frames(pair: Pair) -> None:
    room_id = pair.api.open_room(unique("c"))
    flooder = unique("f")
    sock = await join(pair.a, pair.api, room_id, flooder)
    before = scrape(pair.a)
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < 2.0:
        for _ in range(10):
            await sock.send({"type": "like", "count": MAX_LIKES_PER_FRAME})
            sent += MAX_LIKES_PER_FRAME
        await asyncio.sleep(0.01)
    await sock.send({"type": "ping"})
    await sock.wait_for(lambda f: f["type"] == "pong")  # every like frame before it was read
    elapsed = time.monotonic() - started
    after = scrape(pair.a)
    accepted = after.since(before, "gifting_likes_accepted_total")
    dropped = after.since(before, "gifting_likes_dropped_total")
    assert accepted + dropped == sent
    assert RATE * 2 <= accepted <= RATE * (elapsed + 1), (accepted, elapsed)
    assert dropped >= sent - RATE * (elapsed + 1)
    await wait_total(sock, int(accepted))
    assert pair.total(room_id) == accepted
    assert not [f for f in sock.frames if f["type"] == "error"]
    await sock.close()


@pytest.mark.anyio
async def test_one_engine_call_per_room_and_tick_writes_the_likes(pair: Pair) -> None:
    room_id = pair.api.open_room(unique("c"))
    watcher = await join(pair.a, pair.api, room_id, unique("w"))
    sockets = [await join(pair.a, pair.api, room_id, unique("v")) for _ in range(20)]
    await watcher.send({"type": "like", "count": 1})
    await wait_total(watcher, 1)  # the joins' tallies are written: the next are the likes'
    with engine_client(pair.engine_url) as client:
        stream = KeySchema(pair.prefix).room(room_id).events
        tallies_before = sum(1 for _, f in client.xrange(stream) if f["t"] == "tally")
        before = scrape(pair.a)
        taps = 0
        for _ in range(10):
            for sock in sockets:
                await sock.send({"type": "like", "count": 1})
                taps += 1
            await asyncio.sleep(0.02)
        await wait_total(watcher, 1 + taps)
        after = scrape(pair.a)
        tallies = sum(1 for _, f in client.xrange(stream) if f["t"] == "tally") - tallies_before
    flushes = after.since(before, "gifting_like_flushes_total")
    ticks = after.since(before, "gifting_hub_tick_seconds_count")
    # Each call wrote one tally entry; there is at most one a tick, far fewer than the taps.
    assert flushes == tallies, (flushes, tallies)
    assert 1 <= flushes <= ticks + 1, (flushes, ticks)
    assert flushes < taps / 4, (flushes, taps)
    assert after.since(before, "gifting_likes_written_total") == taps
    assert max(per_frame(watcher, "likes")) == 1
    for sock in [watcher, *sockets]:
        await sock.close()


# -- joins ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_joins_are_named_and_counted_on_the_other_process_but_not_overlays_or_resumes(
    pair: Pair,
) -> None:
    creator = unique("c")
    room_id = pair.api.open_room(creator)
    watcher_id = unique("w")
    watcher = await join(pair.b, pair.api, room_id, watcher_id)
    await watcher.wait_for(lambda f: any(e["type"] == "joins" for e in f.get("events", ())))
    mark = len(watcher.frames)  # the watcher's own join shown
    joiners = [unique("j") for _ in range(14)]
    sockets = await asyncio.gather(*(join(pair.a, pair.api, room_id, u) for u in joiners))
    resumer = unique("r")
    first = await join(pair.a, pair.api, room_id, resumer)
    welcome = first.frames[0]
    await first.close()
    # Not joins: an overlay, and the same viewer coming back with its offset.
    overlay = await open_overlay(pair.a, overlay_token(pair.api, creator))
    await overlay.welcome()
    resumed = await join(pair.a, pair.api, room_id, resumer, since=welcome["offset"], epoch=welcome["epoch"])
    assert resumed.frames[0]["resumed"] is True
    last = unique("z")
    closer = await join(pair.a, pair.api, room_id, last)
    # A's tallies reach the room in order: once this like shows, every join before it has.
    await closer.send({"type": "like", "count": 1})
    await wait_total(watcher, 1, wait_s=15)
    events = [
        e for f in watcher.frames[mark:] if f["type"] == "batch" for e in f["events"] if e["type"] == "joins"
    ]
    # The 14, the resumer's first visit and the last: not the overlay, nor the resume.
    assert sum(e["count"] for e in events) == len(joiners) + 2
    assert all(len(e["users"]) <= NAMED_JOINS and len(e["users"]) <= e["count"] for e in events)
    names = {sock.frames[0]["you"]["id"]: sock.frames[0]["you"]["name"] for sock in [*sockets, first, closer]}
    named = [(u["id"], u["name"]) for e in events for u in e["users"]]
    assert named and set(named) <= set(names.items())
    assert len(named) == len(set(named))  # the resumer named once at most
    assert max(per_frame(watcher, "joins")) == 1
    for sock in [watcher, overlay, resumed, closer, *sockets]:
        await sock.close()


@pytest.mark.anyio
async def test_likes_and_joins_are_not_replayed_on_resume_but_the_total_is_in_the_welcome(pair: Pair) -> None:
    room_id = pair.api.open_room(unique("c"))
    user = unique("v")
    first = await join(pair.a, pair.api, room_id, user)
    welcome = first.frames[0]
    await first.close()
    liker = await join(pair.b, pair.api, room_id, unique("l"))
    await liker.send({"type": "like", "count": 7})
    await wait_total(liker, 7)
    gifter = unique("g")
    pair.api.buy(gifter)
    resumed = await join(pair.a, pair.api, room_id, user, since=welcome["offset"], epoch=welcome["epoch"])
    assert resumed.frames[0]["snapshot"]["likes"] == 7
    reply = pair.api.gift(gifter, room_id, "rose")
    assert reply.status_code == 200, reply.text
    await resumed.wait_gift_count(1)  # the catch-up, if any, came before it
    assert not resumed.events("likes") and not resumed.events("joins")
    for sock in (liker, resumed):
        await sock.close()


# -- a crash ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_killed_process_loses_at_most_the_likes_it_had_not_written(
    engine: Engine, logs: Path
) -> None:
    prefix = f"{unique('lkc')}:"
    # A long tick, so that the kill lands with likes accepted but not yet written.
    env = server_env(engine.url, prefix, GIFTING_TICK_MS="1000")
    likers = [unique("v") for _ in range(10)]
    with running_server(env, logs) as doomed, httpx.Client(base_url=doomed.base_url, timeout=10) as http:
        api = Api(http)
        room_id = api.open_room(unique("c"))

        def like_all() -> int:
            accepted = 0
            for user in likers:
                reply = like(api, doomed, user, room_id, 5)
                assert reply.status_code == 202, reply.text
                accepted += reply.json()["accepted"]
            return accepted

        flushed = like_all()
        await eventually(doomed, lambda s: s.value("gifting_likes_written_total") == flushed)
        accepted = flushed + like_all()
        written: Scrape = scrape(doomed)
        assert doomed.process is not None
        doomed.process.kill()
        doomed.process.wait(10)
        acknowledged = int(written.value("gifting_likes_written_total"))
    with engine_client(engine.url) as client:
        total = int(client.hget(KeySchema(prefix).room(room_id).info, "likes") or 0)
    assert flushed <= acknowledged <= total <= accepted, (flushed, acknowledged, total, accepted)
    if not engine.owned:
        delete_prefix(engine.url, prefix)


# -- the tallies, apart from any I/O ---------------------------------------------------------


def test_a_ticks_tallies_make_one_likes_and_one_joins_event_with_capped_lists() -> None:
    a, b = Tally(), Tally()
    for i in range(8):
        a.like(f"u{i}", f"U{i}", i + 1)
        a.join(f"j{i}", f"J{i}")
        b.join(f"k{i}", f"K{i}")
    b.like("u0", "U0", 20)  # its 1 on a is not among a's top 5: each process sends only those
    b.like("u7", "U7", 3)
    entries = []
    total = 0
    for tally in (a, b):
        _, args = room_likes_arguments(KeySchema("t:").room("r"), "node", 1, tally, 100)
        likes, top, joins, joiners = args[2:6]
        total += int(likes)
        fields = {"l": str(likes), "lt": str(total), "lp": str(top), "j": str(joins), "jn": str(joiners)}
        entries.append(TallyEntry.from_fields(fields))
    likes_event, joins_event = tick_events(entries)
    assert likes_event == {
        "type": "likes",
        "total": 36 + 23,
        "top": [
            {"id": "u0", "name": "U0", "count": 20},
            {"id": "u7", "name": "U7", "count": 11},
            {"id": "u6", "name": "U6", "count": 7},
            {"id": "u5", "name": "U5", "count": 6},
            {"id": "u4", "name": "U4", "count": 5},
        ],
    }
    assert joins_event["count"] == 16
    assert joins_event["users"] == [{"id": f"j{i}", "name": f"J{i}"} for i in range(8)] + [
        {"id": "k0", "name": "K0"},
        {"id": "k1", "name": "K1"},
    ]
    assert tick_events([]) == []


def test_joins_held_over_ticks_merge_into_one_event_counting_all_and_naming_the_first() -> None:
    def joins(first: int, count: int) -> dict[str, Any]:
        users = [{"id": f"u{i}", "name": f"U{i}"} for i in range(first, first + min(count, NAMED_JOINS))]
        return {"type": "joins", "count": count, "users": users}

    held = None
    for first, count in ((0, 4), (2, 3), (10, 40)):  # u2..u4 named twice: once in the merge
        held = merge_joins(held, joins(first, count))
    assert held is not None and held["count"] == 47
    expected = [*range(4), 4, *range(10, 15)]
    assert held["users"] == [{"id": f"u{i}", "name": f"U{i}"} for i in expected]
    assert len(held["users"]) == NAMED_JOINS


@pytest.mark.anyio
async def test_a_tally_the_engine_refuses_is_dropped_and_holds_up_no_other_room(pair: Pair) -> None:
    poisoned, healthy = pair.api.open_room(unique("c")), pair.api.open_room(unique("c"))
    tallies = KeySchema(pair.prefix).room(poisoned).tallies
    with engine_client(pair.engine_url) as client:
        client.set(tallies, "not a hash")  # room_likes.lua then fails with WRONGTYPE
        watcher = await join(pair.a, pair.api, healthy, unique("w"))
        for room_id in (poisoned, healthy):
            assert like(pair.api, pair.a, unique("v"), room_id, 3).json()["accepted"] == 3
        await wait_total(watcher, 3)
        assert pair.total(poisoned) == 0
        client.delete(tallies)
        # Not stuck: the next likes in that room are written, and the room goes on.
        assert like(pair.api, pair.a, unique("v"), poisoned, 4).json()["accepted"] == 4
        await eventually(pair.a, lambda _: pair.total(poisoned) == 4)
        assert like(pair.api, pair.a, unique("v"), healthy, 2).json()["accepted"] == 2
        await wait_total(watcher, 5)
    await watcher.close()
