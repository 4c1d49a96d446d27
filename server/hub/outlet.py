"""Writing pre-built frames straight to a connection's transport, never waiting on it.

uvicorn runs each WebSocket connection with ``GiftingWebSocketProtocol``, its sans-I/O
websockets protocol plus one ASGI scope extension, ``gifting.outlet``, through which the
endpoint reaches this object. Like ``websockets.broadcast``, the hub then writes a frame to
every connection of a room synchronously, skipping connections that are not open, instead
of awaiting one ASGI send per connection. Unlike it, the frame is built once for all.

Each connection's unsent bytes are bounded: a frame that would push the transport's buffer
past the limit is not written; the connection is closed with 4408 and dropped shortly after
if the peer does not read its close frame either. So a reader that stops reading costs at
most the limit, and never slows the room.

The one writer that does wait is a resume's catch-up (``Hub.join``), which can hold many
times the limit: it writes pages of at most a quarter of the limit while the transport's
buffer is under half of it (``drained``), leaving the rest for the frames written meanwhile.

A close the endpoint did not ask for, such as the end of the live or a server shutdown
(SIGTERM, SIGINT: close 1012), waits for the endpoint to answer the frames it has read
(``finish``): a gift being debited at that moment gets its answer before the close frame,
within ``FINISH_WITHIN_S`` (``SHUTDOWN_FINISH_WITHIN_S`` on shutdown). Frames the endpoint
has not taken by the close are dropped unread: none is acted on once its answer can no
longer be sent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from server import metrics
from server.hub.protocol import Close

SCOPE_EXTENSION = "gifting.outlet"
_OPEN = State.OPEN
# After a close frame is queued, how long a peer has to read it before the socket is cut.
ABORT_AFTER_S = 2.0
# How long a finishing connection's endpoint has to answer the frames it has read before it
# is closed all the same: longer than a gift takes while the engine answers at all, so only a
# stuck engine or a sender that never stops holds a close this long.
FINISH_WITHIN_S = 10.0
# uvicorn's bound on a graceful shutdown, after which it cancels what still runs: the
# endpoints' answers (``SHUTDOWN_FINISH_WITHIN_S``), then the peers' reading of the close
# (``ABORT_AFTER_S``), fit in it with time to spare.
GRACEFUL_SHUTDOWN_S = 5
SHUTDOWN_FINISH_WITHIN_S = 2.5


class Inbox:
    """The part of ``asyncio.Queue`` uvicorn's protocol uses for ASGI receive events.

    It holds at most a few events (uvicorn pauses reading until the app takes them), so a
    list and one waiter do; an ``asyncio.Queue`` costs about 2.5 KiB per connection.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def clear(self) -> None:
        self._items.clear()

    @property
    def idle(self) -> bool:
        """True while the endpoint waits for an event and none has arrived."""
        return self._waiter is not None and not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class Gate:
    """The part of ``asyncio.Event`` uvicorn's protocol uses for write flow control."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> bool:
        if not self._open:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return True


# uvicorn's line per socket handshake (accepted, refused), like its access line per HTTP
# request, and websockets' "connection open" and "connection closed"; logged only with
# GIFTING_SOCKET_LOG (server.logs): in a reconnect storm, thousands of handshakes a second,
# formatting and writing them is a large share of a handshake's cost.
SOCKET_LOG = logging.getLogger("server.sockets")


class _SocketLogger:
    """uvicorn's ``uvicorn.error`` logger as a connection and its websockets protocol use
    it, their INFO lines (one per handshake, open and close) on ``SOCKET_LOG`` instead."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    @property
    def level(self) -> int:
        return self._logger.level

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        SOCKET_LOG.info(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


_SOCKET_LOGGER = _SocketLogger(logging.getLogger("uvicorn.error"))


class GiftingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, exposing itself as an outlet to the endpoint.

    It also keeps less per connection than its base: a list-based inbox and gate instead of
    ``asyncio.Queue`` and ``asyncio.Event``, and the handshake's request, response and
    headers are dropped once the connection is accepted.

    ``buffer_limit`` and ``reconnect_rate`` are set on the class by the server at start-up
    (``with_limits``).
    """

    buffer_limit = 256 * 1024
    reconnect_rate = 1_000.0
    # This process's WebSocket connections: those its restart sends back through a handshake
    # (``reconnect_within_ms``). uvicorn's ``connections`` also holds its HTTP ones.
    sockets = 0
    # The close ``finish`` holds back until the endpoint has answered what it read.
    _finishing: tuple[int, str] | None = None
    # Frames the endpoint has taken and not answered yet (it handles several at once).
    unanswered = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Gate()  # type: ignore[assignment]
        self.logger = self.conn.logger = _SOCKET_LOGGER  # type: ignore[assignment]

    @classmethod
    def with_limits(cls, buffer_limit: int, reconnect_rate: float) -> type[GiftingWebSocketProtocol]:
        return type(cls.__name__, (cls,), {"buffer_limit": buffer_limit, "reconnect_rate": reconnect_rate})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        GiftingWebSocketProtocol.sockets += 1
        # Kernel buffering counts against the same budget: a small send buffer makes a
        # stalled reader show up in the transport's buffer instead of in kernel memory.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, min(self.buffer_limit, 1 << 20))
        # Flow control pauses at half the limit, so that ``drained`` leaves the other half free.
        self.transport.set_write_buffer_limits(high=self.buffer_limit // 2)

    def connection_lost(self, exc: Exception | None) -> None:
        GiftingWebSocketProtocol.sockets -= 1
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.request = self.response = None  # type: ignore[assignment]
            self.scope["headers"] = []

    async def run_asgi(self) -> None:
        extensions: dict[str, object] = self.scope["extensions"]  # type: ignore[assignment]
        extensions[SCOPE_EXTENSION] = self
        try:
            await super().run_asgi()
        finally:
            # The scope refers to this protocol, which refers to the scope: a cycle that only
            # the collector's full passes would free once the connection has gone.
            del extensions[SCOPE_EXTENSION]

    async def receive(self) -> Any:
        """The endpoint's next ASGI event; a ``finish`` waiting for this point closes first,
        so the endpoint reads the disconnect rather than another frame."""
        if self._finishing is not None and self.queue.empty() and not self.unanswered:
            self.close(*self._finishing)
        return await super().receive()

    def answering(self, unanswered: int) -> None:
        """The endpoint has ``unanswered`` frames taken and not answered: a ``finish`` waits
        for them, and closes once they are answered if no frame is left to read."""
        self.unanswered = unanswered
        if not unanswered and self._finishing is not None and cast(Inbox, self.queue).idle:
            self.close(*self._finishing)

    def write(self, frame: bytes) -> bool:
        """Write one complete frame; False if the connection is closing or (now closed) too slow.

        This runs once per connection per tick, so it is kept to the checks that matter.
        """
        transport = self.transport
        if self.close_sent or self.conn.state is not _OPEN or transport.is_closing():
            return False
        if transport.get_write_buffer_size() + len(frame) > self.buffer_limit:
            self.drop_too_slow()
            return False
        transport.write(frame)
        return True

    def drop_too_slow(self) -> None:
        """Close a connection that fell behind the room with 4408, cut if it does not read
        that either."""
        self.close(Close.TOO_SLOW, "too slow: the connection fell behind the room", abort=True)
        metrics.WS_SLOW_CONSUMERS_DROPPED.inc()

    @property
    def page_bytes(self) -> int:
        """The most a frame written after ``drained`` may weigh and still fit in the buffer,
        with room to spare for the frames written meanwhile."""
        return self.buffer_limit // 4

    async def drained(self) -> bool:
        """Wait until the transport's buffer is under half the limit; False if the connection
        is closing or closed instead."""
        await self.writable.wait()  # closed by flow control at half the limit, open again at an eighth
        return not (self.close_sent or self.conn.state is not _OPEN or self.transport.is_closing())

    def close(self, code: int, reason: str, abort: bool = False) -> None:
        """Start the closing handshake now, without waiting for the transport to drain.

        The endpoint's pending ``receive()`` gets ``websocket.disconnect`` with ``code``. With
        ``abort``, the socket is cut if the peer has not finished the handshake in time.
        """
        if self.close_sent or self.transport.is_closing() or self.conn.state is not State.OPEN:
            return
        # The endpoint reads the disconnect next, not the frames it has not taken: once the
        # close is sent a frame cannot be answered, so it must not be acted on (charged).
        cast(Inbox, self.queue).clear()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        wait = ABORT_AFTER_S if abort else self.close_timeout
        self.close_timer = self.loop.call_later(wait, self._give_up)

    def finish(self, code: int, reason: str, within_s: float = FINISH_WITHIN_S) -> None:
        """Close once the endpoint has answered every frame it has read: now if it waits for
        one, else when it next asks for a frame and none is left, at the latest after
        ``within_s``. Frames the server reads meanwhile are answered too."""
        if cast(Inbox, self.queue).idle and not self.unanswered:
            self.close(code, reason)
        elif self._finishing is None:
            self._finishing = (code, reason)
            self.loop.call_later(within_s, self.close, code, reason)

    def shutdown(self) -> None:
        """The server is shutting down: close an open connection with 1012 through ``finish``,
        bounded to fit uvicorn's graceful shutdown. (uvicorn's own sends the close at once and
        leaves the endpoint to act on the frames it has read with no way left to answer.)"""
        if not self.handshake_complete or self.close_sent or self.conn.state is not _OPEN:
            super().shutdown()
            return
        self.stop_keepalive()
        # A peer that does not read the close in time is cut, as a slow one is.
        self.close_timeout = ABORT_AFTER_S
        reason = f"the server is restarting; reconnect within {self.reconnect_within_ms()} ms"
        self.finish(Close.SERVER_RESTARTING, reason, SHUTDOWN_FINISH_WITHIN_S)

    def reconnect_within_ms(self) -> int:
        """How long the clients of a restarting server have to come back: its WebSocket
        connections at ``reconnect_rate`` a second. Each draws its first reconnect within that
        window (PROTOCOL.md), so the restarted process is not sent them faster than it serves
        them. uvicorn shuts every connection down in one pass, before any has gone, so all of
        them announce the same window."""
        return round(GiftingWebSocketProtocol.sockets * 1000 / self.reconnect_rate)

    def _give_up(self) -> None:
        self.transport.abort()
