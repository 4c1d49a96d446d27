"""The HTTP/1.1 protocol of every connection: uvicorn's httptools protocol with bounds on the
request head, which arrives before authentication and before the per-address limit.

httptools keeps an unfinished header in memory however long it grows, and uvicorn waits
for a head as long as its sender likes. So a head gets ``max_bytes`` (request line and
headers together) and ``max_count`` headers, or ``431``; and ``timeout_s`` from the
connection's start, or from the first byte of a later request on it, to be complete, or
the connection is closed (``408`` if any of it arrived). The keep-alive timeout
(``GIFTING_KEEP_ALIVE_S``, longer than client pools keep an idle connection) still bounds the
wait between requests. A WebSocket upgrade is bounded the same way up to its handshake.

The bounds are set on the class by the server at start-up (``with_limits``), as for
``GiftingWebSocketProtocol``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the bounds."""


class BoundedHeadProtocol(HttpToolsProtocol):
    max_bytes = 16 * 1024
    max_count = 100
    timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._head_count = 0
        self._too_large = False
        self._head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_limits(cls, max_bytes: int, max_count: int, timeout_s: float) -> type[BoundedHeadProtocol]:
        return type(
            cls.__name__, (cls,), {"max_bytes": max_bytes, "max_count": max_count, "timeout_s": timeout_s}
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._reading_head:
            super().data_received(data)
            return
        # Only what fits in the head's budget reaches the parser while a head is read; the
        # rest follows once the head is complete (a body, or the next pipelined request).
        room = self.max_bytes - self._head_bytes
        head, rest = data[:room], data[room:]
        self._head_bytes += len(head)
        super().data_received(head)
        if self.transport.is_closing():
            return
        if self._reading_head:
            if rest or self._head_bytes >= self.max_bytes:
                self._refuse_head(f"the request head is over {self.max_bytes} bytes")
            return
        if rest and self.transport.get_protocol() is self:  # not upgraded to a WebSocket
            self.data_received(rest)

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # The connection is the WebSocket protocol's now. The parser refers to this protocol,
        # which refers to the parser; uvicorn breaks that cycle when a connection is lost, which
        # this protocol no longer hears of, so it is broken here.
        self.parser = None  # type: ignore[assignment]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_count = 0
        self._start_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self.max_count:
            self._too_large = True
            raise HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next byte begins another request's head.
        self._reading_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400, one raised by on_header included.
        if self._too_large:
            self._refuse_head(f"the request head has over {self.max_count} headers")
        else:
            super().send_400_response(msg)

    def _refuse_head(self, reason: str) -> None:
        self._stop_head_timer()
        self._reply_and_close(431, "Request Header Fields Too Large", reason)

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.timeout_s, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes:
            reason = f"the request head was not complete within {self.timeout_s:g} s"
            self._reply_and_close(408, "Request Timeout", reason)
        else:
            self.transport.close()

    def _reply_and_close(self, status: int, phrase: str, reason: str) -> None:
        body = reason.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase.encode(), len(body), body)
        )
        self.transport.close()
