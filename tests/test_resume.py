"""Resuming a room socket after a gap far larger than a connection's buffer.

A real server with a 16 KiB per-connection buffer and a 3,000-event log window; senders with
64-character names, so that the gifts a viewer misses weigh many times that buffer. The
viewer that resumes must get every missed gift exactly once and in order, paced to what
its connection can take, with live gifts arriving meanwhile neither lost nor repeated; one
too slow to catch up before the log window moves past it is told so (4408, then `resync`),
never moved silently past what it missed.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import anyio
import httpx
import orjson
import pytest

from tests.conftest import Engine
from tests.support import Api, ServerProcess, engine_client, running_server, server_env, unique
from tests.test_rooms import raw_upgrade, read_until_closed
from tests.wsclient import JSON, MSGPACK, Frame, RoomSocket

pytestmark = pytest.mark.anyio

BUFFER_BYTES = 16 * 1024
ENV = {
    "GIFTING_WS_BUFFER_BYTES": str(BUFFER_BYTES),
    "GIFTING_ROOM_STREAM_LEN": "3000",
    "GIFTING_GIFT_RATE": "1000",
    "GIFTING_GIFT_BURST": "1000",
}
SENDERS = 8
LONG_NAME = "N" * 64


@dataclass
class Server:
    process: ServerProcess
    api: Api


@pytest.fixture(scope="module")
def server(engine: Engine, key_prefix: str, logs: Path) -> Iterator[Server]:
    env = server_env(engine.url, key_prefix, **ENV)
    with running_server(env, logs) as process, httpx.Client(base_url=process.base_url, timeout=10) as http:
        yield Server(process, Api(http))


def long_named_senders(api: Api) -> list[str]:
    senders = []
    for i in range(SENDERS):
        user = unique("s")
        reply = api.http.post(
            "/v1/dev/token", json={"user_id": user, "role": "viewer", "name": f"{i}{LONG_NAME}"[:64]}
        )
        assert reply.status_code == 200, reply.text
        api.tokens[(user, "viewer")] = reply.json()["token"]
        api.buy(user, "us_1250")
        senders.append(user)
    return senders


async def send_gifts(
    api: Api, base_url: str, room_id: str, senders: list[str], each: int
) -> dict[str, list[str]]:
    """``each`` roses from every sender, the senders in parallel; each sender's acknowledged
    gift ids in the order they were acknowledged (which is their order in the room)."""
    acked: dict[str, list[str]] = {sender: [] for sender in senders}

    async def send(sender: str) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            for _ in range(each):
                body = {"gift_id": "rose", "count": 1, "idempotency_key": unique("k")}
                reply = await http.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=api.auth(sender))
                assert reply.status_code == 200, reply.text
                acked[sender].append(reply.json()["gift_event_id"])

    async with anyio.create_task_group() as tasks:
        for sender in senders:
            tasks.start_soon(send, sender)
    return acked


def resume_point(frames: list[Frame]) -> tuple[str, str]:
    """What a client such as ``client_demo/js/live.js`` keeps: the offset of the last
    ``welcome`` or ``batch`` it processed, and the epoch."""
    welcome = next(frame for frame in frames if frame["type"] == "welcome")
    last = next(frame for frame in reversed(frames) if frame["type"] in ("batch", "welcome"))
    return last["offset"], welcome["epoch"]


def gifts(frames: list[Frame]) -> list[Frame]:
    return [e for f in frames if f["type"] == "batch" for e in f["events"] if e["type"] == "gift"]


def small_receive_buffer(base_url: str) -> socket.socket:
    """A connected socket whose small receive window makes the server wait for it to read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


def assert_in_room_order(received: list[Frame], acked: dict[str, list[str]]) -> None:
    """Every acknowledged gift exactly once, each sender's in the order it was sent."""
    ids = [event["event_id"] for event in received]
    assert len(ids) == len(set(ids)), "a gift arrived twice"
    assert set(ids) == {gift for sent in acked.values() for gift in sent}
    for sender, sent in acked.items():
        assert [e["event_id"] for e in received if e["sender"]["id"] == sender] == sent


async def test_a_resume_after_a_gap_many_times_the_buffer_delivers_every_missed_gift_once_in_order(
    server: Server,
) -> None:
    api, base_url = server.api, server.process.base_url
    room_id = api.open_room(unique("c"))
    senders = long_named_senders(api)
    viewer = unique("w")
    first = await RoomSocket.open(base_url, room_id, api.token(viewer))
    await first.welcome()
    seen = await send_gifts(api, base_url, room_id, senders[:1], 3)
    await first.wait_gift_count(3)
    since, epoch = resume_point(first.frames)
    await first.close()

    # 1,200 gifts of about 225 bytes each: some sixteen times the connection's buffer.
    missed = await send_gifts(api, base_url, room_id, senders, 150)
    resumed = await RoomSocket.open(
        base_url, room_id, api.token(viewer), since=since, epoch=epoch, sock=small_receive_buffer(base_url)
    )
    welcome = await resumed.recv()
    assert welcome["type"] == "welcome" and welcome["resumed"] is True, welcome
    # The welcome claims no more than the connection has been sent: a client storing it skips nothing.
    assert welcome["offset"] == since
    live: dict[str, list[str]] = {}

    async def send_live() -> None:
        live.update(await send_gifts(api, base_url, room_id, senders[:2], 40))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(send_live)  # live gifts while the catch-up is written
        await resumed.wait_gift_count(SENDERS * 150 + 2 * 40, wait_s=60)
    assert not [f for f in resumed.frames if f["type"] in ("resync", "error")]
    assert resumed.ws.close_code is None
    received = gifts(resumed.frames)
    assert_in_room_order(received, {s: missed[s] + live.get(s, []) for s in senders})
    assert not set(seen[senders[0]]) & {e["event_id"] for e in received}
    offsets = [offset_key(f["offset"]) for f in resumed.frames if f["type"] == "batch" and gifts([f])]
    assert offsets == sorted(set(offsets)), "each batch of gifts moves the offset forward"
    await resumed.close()


async def test_viewers_resuming_from_one_offset_share_its_pages_and_each_gets_every_gift_once(
    server: Server,
) -> None:
    """After a restart a room's viewers all come back from the offset of its last batch: the
    pages they catch up with are read and encoded once (``Hub._page``) and shared, across
    subprotocols and arrival times, while live gifts go on; each viewer still gets every gift
    once and in order."""
    api, base_url = server.api, server.process.base_url
    room_id = api.open_room(unique("c"))
    senders = long_named_senders(api)
    first = await RoomSocket.open(base_url, room_id, api.token(unique("w")))
    await first.welcome()
    await send_gifts(api, base_url, room_id, senders[:1], 2)
    await first.wait_gift_count(2)
    since, epoch = resume_point(first.frames)
    await first.close()
    missed = await send_gifts(api, base_url, room_id, senders, 150)  # three pages of the log
    live: dict[str, list[str]] = {}
    viewers: list[RoomSocket] = []

    async def resume(subprotocol: str) -> None:
        """A viewer resuming, reading as a client does from its welcome on (one left unread
        while live gifts go on falls behind the room and is closed as too slow)."""
        sock = await RoomSocket.open(
            base_url, room_id, api.token(unique("w")), subprotocol=subprotocol, since=since, epoch=epoch
        )
        viewers.append(sock)
        welcome = await sock.recv()
        assert welcome["type"] == "welcome" and welcome["resumed"] is True, welcome
        await sock.wait_gift_count(SENDERS * 150 + 2 * 30, wait_s=60)

    try:
        async with anyio.create_task_group() as tasks:

            async def send_live() -> None:
                live.update(await send_gifts(api, base_url, room_id, senders[:2], 30))
                tasks.start_soon(resume, JSON)  # after the live gifts: its pages end further on

            for subprotocol in (JSON, MSGPACK, JSON, MSGPACK):
                tasks.start_soon(resume, subprotocol)
            tasks.start_soon(send_live)
        assert len(viewers) == 5
        for sock in viewers:
            assert not [f for f in sock.frames if f["type"] in ("resync", "error")]
            assert_in_room_order(gifts(sock.frames), {s: missed[s] + live.get(s, []) for s in senders})
    finally:
        for sock in viewers:
            await sock.close()


def stream_window_reads(url: str) -> int:
    """``XINFO STREAM`` calls the engine has answered: a resume's reads of a room's window."""
    with engine_client(url) as client:
        stats: dict[str, dict[str, int]] = client.info("commandstats")
    return stats.get("cmdstat_xinfo|stream", {}).get("calls", 0)


class LeftRoom(NamedTuple):
    """A room with one long-named sender and a viewer still watching it, and where a viewer
    that saw its first two gifts and left would resume from."""

    room_id: str
    senders: list[str]
    watcher: RoomSocket
    since: str
    epoch: str


async def a_viewer_left(server: Server) -> LeftRoom:
    api, base_url = server.api, server.process.base_url
    room_id = api.open_room(unique("c"))
    senders = long_named_senders(api)[:1]
    watcher = await RoomSocket.open(base_url, room_id, api.token(unique("w")))
    await watcher.welcome()
    first = await RoomSocket.open(base_url, room_id, api.token(unique("w")))
    await first.welcome()
    await send_gifts(api, base_url, room_id, senders, 2)
    await first.wait_gift_count(2)
    since, epoch = resume_point(first.frames)
    await first.close()
    return LeftRoom(room_id, senders, watcher, since, epoch)


@pytest.mark.embedded_only
async def test_viewers_resuming_from_one_offset_share_one_read_of_the_room_window(
    server: Server, engine: Engine
) -> None:
    """The viewers of a restarted process come back together: the window their offset is
    checked against is the one their shared first catch-up page was read with, not a read
    of its own for each."""
    api, base_url = server.api, server.process.base_url
    room_id, senders, watcher, since, epoch = await a_viewer_left(server)
    missed = await send_gifts(api, base_url, room_id, senders, 5)
    await watcher.wait_gift_count(7)  # the server has read past the offset the viewers bring
    before = stream_window_reads(engine.url)
    for _ in range(4):
        sock = await RoomSocket.open(base_url, room_id, api.token(unique("w")), since=since, epoch=epoch)
        try:
            welcome = await sock.recv()
            assert welcome["type"] == "welcome" and welcome["resumed"] is True, welcome
            await sock.wait_gift_count(5)
            assert [gift["event_id"] for gift in gifts(sock.frames)] == missed[senders[0]]
        finally:
            await sock.close()
    assert stream_window_reads(engine.url) - before == 1
    await watcher.close()


async def test_a_viewer_resuming_later_from_an_offset_takes_what_followed_in_one_page_not_in_earlier_steps(
    server: Server,
) -> None:
    """A page read for one resume ends at the room's cursor of that moment. One resuming from
    the same offset once the room has moved on gets the page read again up to the cursor
    now: the gifts since then come in one frame, not cut where the earlier page ended (after
    a restart, each viewer coming back took every step in which earlier ones had chased the
    cursor, one tick's events at a time)."""
    api, base_url = server.api, server.process.base_url
    room_id, senders, watcher, since, epoch = await a_viewer_left(server)
    early = (await send_gifts(api, base_url, room_id, senders, 2))[senders[0]]
    await watcher.wait_gift_count(4)
    earlier = await RoomSocket.open(base_url, room_id, api.token(unique("w")), since=since, epoch=epoch)
    await earlier.wait_gift_count(2)
    assert [gift["event_id"] for gift in gifts(earlier.frames)] == early
    await earlier.close()
    late = (await send_gifts(api, base_url, room_id, senders, 6))[senders[0]]
    await watcher.wait_gift_count(10)  # the room's cursor has moved past the earlier page
    later = await RoomSocket.open(base_url, room_id, api.token(unique("w")), since=since, epoch=epoch)
    try:
        await later.wait_gift_count(8)
        pages = [[gift["event_id"] for gift in gifts([frame])] for frame in later.frames if gifts([frame])]
        # Eight gifts of about 225 bytes: one frame of the connection's 4 KiB pages.
        assert pages == [early + late]
    finally:
        await later.close()
        await watcher.close()


async def test_a_client_that_drops_mid_catch_up_resumes_from_what_it_stored_and_misses_nothing(
    server: Server,
) -> None:
    api, base_url = server.api, server.process.base_url
    room_id = api.open_room(unique("c"))
    senders = long_named_senders(api)
    viewer = unique("w")
    first = await RoomSocket.open(base_url, room_id, api.token(viewer), subprotocol=MSGPACK)
    since, epoch = resume_point([await first.welcome()])
    await first.close()
    missed = await send_gifts(api, base_url, room_id, senders, 100)

    # Each connection takes its welcome and one batch, then drops; the next one resumes from
    # the offset the client stored, as live.js does, until every missed gift has arrived.
    received: list[Frame] = []
    connections = 0
    while len(received) < SENDERS * 100:
        connections += 1
        assert connections <= SENDERS * 100, "the resumes make no progress"
        sock = await RoomSocket.open(
            base_url, room_id, api.token(viewer), subprotocol=MSGPACK, since=since, epoch=epoch
        )
        welcome = await sock.recv()
        assert welcome["type"] == "welcome" and welcome["resumed"] is True, welcome
        assert (await sock.recv())["type"] == "batch"
        since, _ = resume_point(sock.frames)
        received += gifts(sock.frames)
        sock.ws.transport.abort()  # the connection drops, with the rest of the catch-up in flight
    assert connections > 2, "the catch-up should come in several batches"
    assert_in_room_order(received, missed)


def offset_key(offset: str) -> tuple[int, int]:
    ms, seq = offset.split("-")
    return int(ms), int(seq)


async def test_a_live_that_ends_during_a_catch_up_still_delivers_all_of_it_then_closes_with_1000(
    server: Server,
) -> None:
    api, base_url = server.api, server.process.base_url
    creator = unique("c")
    room_id = api.open_room(creator)
    senders = long_named_senders(api)
    viewer = unique("w")
    first = await RoomSocket.open(base_url, room_id, api.token(viewer))
    since, epoch = resume_point([await first.welcome()])
    await first.close()
    missed = await send_gifts(api, base_url, room_id, senders, 150)
    resumed = await RoomSocket.open(
        base_url, room_id, api.token(viewer), since=since, epoch=epoch, sock=small_receive_buffer(base_url)
    )
    # Joined (its welcome is the first frame), and little more read: most of the catch-up is
    # still waiting for the connection to take it when the live ends.
    await resumed.welcome()
    assert api.end_room(creator, room_id).status_code == 200
    assert await resumed.closed(wait_s=30) == (1000, "the live has ended")
    assert_in_room_order(gifts(resumed.frames), missed)
    events = [e for f in resumed.frames if f["type"] == "batch" for e in f["events"]]
    assert events[-1]["type"] == "room_end"
    assert [e for e in events if e["type"] == "room_end"] == events[-1:]


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """What a server wrote after its handshake, as (opcode, payload): unmasked, unfragmented."""
    at = data.index(b"\r\n\r\n") + 4
    frames = []
    while at + 2 <= len(data):
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if size >= 126:
            width = 2 if size == 126 else 8
            size, at = int.from_bytes(data[at : at + width]), at + width
        frames.append((opcode, data[at : at + size]))
        at += size
    return frames


async def test_a_catch_up_overtaken_by_the_log_window_is_closed_as_too_slow_and_the_next_resume_resyncs(
    server: Server,
) -> None:
    api, base_url = server.api, server.process.base_url
    room_id = api.open_room(unique("c"))
    senders = long_named_senders(api)
    viewer = unique("w")
    first = await RoomSocket.open(base_url, room_id, api.token(viewer))
    since, epoch = resume_point([await first.welcome()])
    await first.close()
    missed = await send_gifts(api, base_url, room_id, senders, 150)
    query = f"token={api.token(viewer)}&since={since}&epoch={epoch}"
    stalled = raw_upgrade(server.process.port, f"/v1/rooms/{room_id}/ws?{query}", receive_buffer=4096)
    # It reads nothing while 3,600 more gifts go by: the 3,000-event log moves past its catch-up.
    later = await send_gifts(api, base_url, room_id, senders, 450)
    frames = server_frames(read_until_closed(stalled))
    messages = [orjson.loads(payload) for opcode, payload in frames if opcode == 0x1]
    assert messages[0]["type"] == "welcome" and messages[0]["resumed"] is True
    close = next(payload for opcode, payload in frames if opcode == 0x8)
    assert int.from_bytes(close[:2]) == 4408
    received = gifts(messages)
    assert received, "the catch-up had started"
    # Nothing skipped: what arrived is, for each sender, the start of what it sent.
    assert len({e["event_id"] for e in received}) == len(received)
    for sender in senders:
        sent = missed[sender] + later[sender]
        mine = [e["event_id"] for e in received if e["sender"]["id"] == sender]
        assert mine == sent[: len(mine)]
    # Its last offset has left the window now: the next resume is a resync, not another 4408.
    offset, _ = resume_point(messages)
    again = await RoomSocket.open(base_url, room_id, api.token(viewer), since=offset, epoch=epoch)
    resync = await again.recv()
    assert resync["type"] == "resync" and "window" in resync["reason"]
    welcome = await again.recv()
    assert welcome["type"] == "welcome" and welcome["resumed"] is False
    await again.close()
