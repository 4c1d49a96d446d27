"""A room socket that has closed is freed at once, by reference counting.

Were any of its objects left in a reference cycle, only the collector's full pass would free
them. That pass pauses every connection of the process, for longer the more it holds (442 ms
at 10,000), and the server runs it seldom (``app.GC_THRESHOLDS``): a cycle per closed socket
would hold the memory of every viewer who left until then.

The server runs in this process, so that the test can switch the collector off and see which
of a socket's objects outlive it. It is the app, protocols and options of ``python -m server``,
on a free port.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
import uvicorn

from server.api.heads import BoundedHeadProtocol
from server.app import create_app
from server.engine import free_port
from server.hub.outlet import GiftingWebSocketProtocol
from server.settings import Settings
from server.workers import uvicorn_options
from tests.conftest import Engine
from tests.support import Api, server_env, until
from tests.wsclient import RoomSocket

pytestmark = pytest.mark.anyio

SOCKETS = 5
WAIT_S = 10.0

made: list[weakref.ref[Any]] = []


class TrackedHeads(BoundedHeadProtocol):
    """The server's HTTP protocol, remembered (weakly) by the test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        made.append(weakref.ref(self))


class TrackedSocket(GiftingWebSocketProtocol):
    """The server's WebSocket protocol, remembered (weakly) by the test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        made.append(weakref.ref(self))


async def test_a_closed_room_socket_leaves_nothing_for_the_collector(
    engine: Engine, key_prefix: str, api: Api, room: tuple[str, str], viewer: str
) -> None:
    _, room_id = room
    api.buy(viewer)
    token = api.token(viewer)
    port = free_port()
    settings = Settings.from_env(
        server_env(engine.url, key_prefix, GIFTING_HOST="127.0.0.1", GIFTING_PORT=str(port))
    )
    options = {**uvicorn_options(settings), "log_config": None, "workers": None}
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine.url), ws=TrackedSocket, http=TrackedHeads, **options)
    )
    thresholds = gc.get_threshold()
    serving = asyncio.create_task(server.serve())
    made.clear()
    try:
        await until(lambda: server.started or serving.done(), WAIT_S, "the server started", poll_s=0.01)
        assert server.started, "the server stopped during start-up"
        base_url = f"http://127.0.0.1:{port}"
        gc.disable()
        try:
            for _ in range(SOCKETS):
                sock = await RoomSocket.open(base_url, room_id, token)
                await sock.welcome()
                ack = await sock.gift("rose")
                assert ack["type"] == "gift_ack", ack
                await sock.close()
            assert len(made) == 2 * SOCKETS, "each socket is one HTTP and one WebSocket protocol"
            await until(
                lambda: not server.server_state.connections,
                WAIT_S,
                "the server let go of every socket",
                poll_s=0.01,
            )

            def alive() -> list[str]:
                return [type(obj).__name__ for ref in made if (obj := ref()) is not None]

            # A protocol outlives its socket only as long as the loop has callbacks for it.
            await until(
                lambda: not alive(), WAIT_S, "every protocol freed without the collector", poll_s=0.01
            )
        finally:
            gc.enable()
    finally:
        server.should_exit = True
        await serving
        # The app's start-up froze this process's objects and set its thresholds.
        gc.unfreeze()
        gc.set_threshold(*thresholds)
