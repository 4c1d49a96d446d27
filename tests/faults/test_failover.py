"""Hub failover: a server process dies with ``kill -9`` while its viewers watch a busy room.

Two real server processes share the engine. Viewers watch the room through A while a
sender gifts through B; A is killed mid-stream. Each viewer reconnects to B with the offset
and epoch it last saw (as ``client_demo/js/live.js`` does) and must end up with every gift
acknowledged to the sender exactly once, in order, none lost in the gap and none repeated
across the two connections; and the room's viewer count must come back to the viewers
actually connected once A's presence report expires.
"""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import Engine
from tests.support import Api, running_server, server_env, unique
from tests.wsclient import JSON, MSGPACK, Frame, RoomSocket

pytestmark = pytest.mark.anyio

VIEWERS = 12
ENV = {"GIFTING_PRESENCE_TTL_S": "1.5", "GIFTING_GIFT_RATE": "1000", "GIFTING_GIFT_BURST": "1000"}


async def read_until_closed(sock: RoomSocket) -> None:
    try:
        while True:
            await sock.recv(wait_s=30)
    except ConnectionClosed:
        return


def resume_point(sock: RoomSocket) -> tuple[str, str]:
    """The offset of the last batch (or the welcome) this socket received, and the room's epoch."""
    welcome = next(frame for frame in sock.frames if frame["type"] == "welcome")
    last = next(frame for frame in reversed(sock.frames) if frame["type"] in ("batch", "welcome"))
    return last["offset"], welcome["epoch"]


def gift_ids(frames: list[Frame]) -> list[str]:
    return [
        event["event_id"]
        for frame in frames
        if frame["type"] == "batch"
        for event in frame["events"]
        if event["type"] == "gift"
    ]


async def room_viewers(http: httpx.AsyncClient, room_id: str) -> int:
    reply = await http.get(f"/v1/rooms/{room_id}")
    return int(reply.json()["snapshot"]["viewers"])


async def test_viewers_of_a_killed_process_resume_on_the_other_with_nothing_lost_or_repeated(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    env = server_env(engine.url, key_prefix, **ENV)
    with (
        running_server(env, logs) as a,
        running_server(env, logs) as b,
        httpx.Client(base_url=b.base_url, timeout=10) as http,
    ):
        api = Api(http)
        room_id = api.open_room(unique("c"))
        sender = unique("v")
        api.buy(sender, "us_1250")
        viewers = [unique("w") for _ in range(VIEWERS)]
        first = [
            await RoomSocket.open(a.base_url, room_id, api.token(v), subprotocol=(JSON, MSGPACK)[i % 2])
            for i, v in enumerate(viewers)
        ]
        for sock in first:
            await sock.welcome()
        watcher = await RoomSocket.open(b.base_url, room_id, api.token(unique("w")))
        await watcher.welcome()
        await watcher.wait_event({"type": "viewers", "viewers": VIEWERS + 1})
        await watcher.close()

        acked: list[str] = []

        async def send(n: int) -> None:
            async with httpx.AsyncClient(base_url=b.base_url, timeout=10) as gifts:
                for _ in range(n):
                    body = {"gift_id": "rose", "count": 1, "idempotency_key": unique("k")}
                    reply = await gifts.post(
                        f"/v1/rooms/{room_id}/gifts", json=body, headers=api.auth(sender)
                    )
                    assert reply.status_code == 200, reply.text
                    acked.append(reply.json()["gift_event_id"])

        async with anyio.create_task_group() as tasks:
            for sock in first:
                tasks.start_soon(read_until_closed, sock)
            await send(15)
            # Wait until A has delivered some gifts, so the resume starts from inside the stream.
            # The reader task owns the socket's recv: watch the frames it has collected.
            deadline = anyio.current_time() + 10
            while not gift_ids(first[0].frames):
                assert anyio.current_time() < deadline, "process A delivered no gift"
                await anyio.sleep(0.01)
            assert a.process is not None
            a.process.send_signal(signal.SIGKILL)
            a.process.wait()
            await send(15)  # gifts the viewers miss while they are away
        assert len(acked) == 30

        again = []
        for i, (viewer, sock) in enumerate(zip(viewers, first, strict=True)):
            since, epoch = resume_point(sock)
            resumed = await RoomSocket.open(
                b.base_url,
                room_id,
                api.token(viewer),
                subprotocol=(JSON, MSGPACK)[i % 2],
                since=since,
                epoch=epoch,
            )
            welcome = await resumed.welcome()
            assert welcome["resumed"] is True, welcome
            again.append(resumed)
        await send(5)
        for before, after in zip(first, again, strict=True):
            seen_before = gift_ids(before.frames)
            missing = len(acked) - len(seen_before)
            await after.wait_gift_count(missing)
            assert seen_before + gift_ids(after.frames) == acked
            assert not [f for f in after.frames if f["type"] == "resync"]

        # A's report of its viewers expires and B counts those that came back. Four leave, so
        # the count to reach (8) differs from every stale mix of A's and B's reports.
        for sock in again[8:]:
            await sock.close()
        deadline = anyio.current_time() + 15
        async with httpx.AsyncClient(base_url=b.base_url, timeout=10) as rooms:
            while (viewers_now := await room_viewers(rooms, room_id)) != 8:
                assert anyio.current_time() < deadline, f"the viewer count stays at {viewers_now}, not 8"
                await anyio.sleep(0.1)
        for sock in again[:8]:
            await sock.close()
