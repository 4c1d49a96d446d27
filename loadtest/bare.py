"""The bare broadcaster: the fan-out ceiling, a ``websockets`` asyncio server in its own process
that ``broadcast()``s one pre-built frame to every connection in a tight loop, on command.

``broadcast`` has no flow control, so when the sinks are slower than the loop it would queue
without bound; the loop therefore also waits 1 ms while any of ``BARE_PROBES`` probed
connections has more than ``inflight`` bytes unsent (kernel send queue + transport buffer),
and reports the share of its time spent waiting.

The bare handshake server (``bare_handshakes``) is the connect rate's ceiling: uvicorn with
the server's WebSocket protocol implementation and options, in front of an ASGI app that
accepts every connection with the subprotocol, sends one small ``welcome`` frame and holds the
connection. No token, no limits, no room: what a handshake costs before the server does
anything of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import multiprocessing
import socket
import struct
import termios
import time
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send

from loadtest.harness import SUBPROTOCOL, BenchError, raise_fd_limit, run_async
from server.engine import free_port
from server.settings import Settings

SERVER_BUFFER_BYTES = 256 * 1024  # GIFTING_WS_BUFFER_BYTES's default, also given to the bare server
BARE_PROBES = 16


def bare_process(conn: Connection, port: int, inflight: int) -> None:
    """The ceiling's process: a bare websockets server that broadcasts on command."""
    raise_fd_limit()
    run_async(bare_serve(conn, port, inflight))


def unsent_bytes(connection: Any) -> int:
    """Bytes a connection has not handed to the peer yet: transport buffer + kernel send queue."""
    transport = connection.transport
    queued = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        buffer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        queued += struct.unpack("i", buffer)[0]
    return int(queued)


async def bare_serve(conn: Connection, port: int, inflight: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.typing import Subprotocol

    connections: set[ServerConnection] = set()

    async def handler(connection: ServerConnection) -> None:
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:  # as the server's outlet does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_BUFFER_BYTES)
        connections.add(connection)
        try:
            await connection.wait_closed()
        finally:
            connections.discard(connection)

    counters = {"loops": 0, "waits": 0, "wait_s": 0.0}

    async def blast(message: str) -> None:
        probes: list[ServerConnection] = []
        probed_count = -1
        while True:
            broadcast(connections, message)
            await asyncio.sleep(0)
            counters["loops"] += 1
            if probed_count != len(connections):
                probed_count = len(connections)
                everyone = list(connections)
                probes = everyone[:: max(1, len(everyone) // BARE_PROBES)]
            started = time.perf_counter()
            while any(unsent_bytes(probe) > inflight for probe in probes):
                counters["waits"] += 1
                await asyncio.sleep(0.001)
            counters["wait_s"] += time.perf_counter() - started

    loop = asyncio.get_running_loop()
    task: asyncio.Task[None] | None = None
    async with serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        ping_interval=None,
        compression=None,
        backlog=4096,
    ):
        conn.send({"ready": True})
        while True:
            command: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
            if command["op"] == "start":
                counters.update(loops=0, waits=0, wait_s=0.0)
                task = asyncio.create_task(blast(command["message"]))
                conn.send({"ok": True})
            elif command["op"] == "stop":
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                conn.send({"connections": len(connections), **counters})
            else:
                conn.send({"ok": True})
                return


class Bare:
    def __init__(self, inflight: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.port = free_port()
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=bare_process, args=(theirs, self.port, inflight), daemon=True)
        self.process.start()
        theirs.close()

    async def call(self, **command: Any) -> dict[str, Any]:
        def roundtrip() -> dict[str, Any]:
            if command:
                self.conn.send(command)
            reply: dict[str, Any] = self.conn.recv()
            return reply

        return await asyncio.get_running_loop().run_in_executor(None, roundtrip)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call(op="quit"), 10)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


# --- the handshake ceiling -----------------------------------------------------------------

# The bare handshake server's first frame: the sinks count a connection open on it, as they do
# on the server's welcome.
BARE_WELCOME = '{"type":"welcome"}'
BARE_START_TIMEOUT_S = 30.0


async def handshake_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept every WebSocket with the subprotocol, send ``BARE_WELCOME``, hold it open."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
    await send({"type": "websocket.send", "text": BARE_WELCOME})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def handshake_process(port: int) -> None:
    """The bare handshake server's process: uvicorn's ``websockets-sansio`` protocol (which the
    server's own extends) with the server's default options."""
    raise_fd_limit()
    uvicorn.run(
        handshake_app,
        host="127.0.0.1",
        port=port,
        loop="auto",
        lifespan="off",
        log_level="warning",
        server_header=False,
        backlog=Settings.listen_backlog,
        ws="websockets-sansio",
        ws_max_size=Settings.ws_max_frame_bytes,
        ws_ping_interval=Settings.ws_ping_s,
        ws_ping_timeout=Settings.ws_ping_s,
        ws_per_message_deflate=False,
    )


@contextlib.asynccontextmanager
async def bare_handshakes() -> AsyncIterator[tuple[int, int]]:
    """A bare handshake server in its own process: its port and pid, once it listens."""
    process = multiprocessing.get_context("spawn").Process(
        target=handshake_process, args=(port := free_port(),), daemon=True
    )
    process.start()
    try:
        deadline = time.monotonic() + BARE_START_TIMEOUT_S
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                if not process.is_alive() or time.monotonic() > deadline:
                    raise BenchError("the bare handshake server did not start listening") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        assert process.pid is not None
        yield port, process.pid
    finally:
        process.terminate()
        process.join(5)
        if process.is_alive():
            process.kill()
