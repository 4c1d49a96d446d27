"""A real WebSocket client of a room for the tests: both subprotocols, frames kept in order."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support import unique

JSON = "gifting.v1.json"
MSGPACK = "gifting.v1.msgpack"
Frame = dict[str, Any]


@dataclass
class RoomSocket:
    ws: ClientConnection
    encoding: str
    frames: list[Frame] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        base_url: str,
        room_id: str,
        token: str | None,
        *,
        subprotocol: str | None = JSON,
        token_in_header: bool = False,
        since: str | None = None,
        epoch: str | None = None,
        origin: str | None = None,
        path: str | None = None,
        sock: socket.socket | None = None,
    ) -> RoomSocket:
        """Connect to ``room_id``'s socket (or to ``path``, such as an overlay's), over
        ``sock`` if given (a connected socket, such as one with a small receive buffer)."""
        query = {}
        if token is not None and not token_in_header:
            query["token"] = token
        if since is not None:
            query["since"] = since
        if epoch is not None:
            query["epoch"] = epoch
        url = base_url.replace("http://", "ws://") + (path or f"/v1/rooms/{room_id}/ws")
        if query:
            url += "?" + urlencode(query)
        offered = [subprotocol] if subprotocol else []
        if token_in_header and token is not None:
            offered.append(f"bearer.{token}")
        ws = await connect(
            url,
            subprotocols=offered or None,  # type: ignore[arg-type]
            origin=origin,  # type: ignore[arg-type]
            max_size=None,
            open_timeout=10,
            sock=sock,
        )
        return cls(ws, subprotocol or JSON)

    async def send(self, message: Frame) -> None:
        if self.encoding == MSGPACK:
            await self.ws.send(msgpack.packb(message))
        else:
            await self.ws.send(orjson.dumps(message).decode())

    def send_together(self, messages: list[Frame]) -> None:
        """Send ``messages`` as frames in one write, so that the server reads them together."""
        protocol = self.ws.protocol
        for message in messages:
            if self.encoding == MSGPACK:
                protocol.send_binary(msgpack.packb(message))
            else:
                protocol.send_text(orjson.dumps(message))
        self.ws.transport.write(b"".join(protocol.data_to_send()))

    async def recv(self, wait_s: float = 10) -> Frame:
        raw = await asyncio.wait_for(self.ws.recv(), wait_s)
        if self.encoding == MSGPACK:
            assert isinstance(raw, bytes), "a msgpack connection must get binary frames"
            frame: Frame = msgpack.unpackb(raw)
        else:
            assert isinstance(raw, str), "a JSON connection must get text frames"
            frame = orjson.loads(raw)
        self.frames.append(frame)
        return frame

    async def wait_for(
        self, predicate: Callable[[Frame], bool], wait_s: float = 10, *, new: bool = False, after: int = 0
    ) -> Frame:
        """The first frame that satisfies ``predicate``: among those received so far from index
        ``after`` on (unless ``new``), else from those that arrive next."""
        for frame in () if new else self.frames[after:]:
            if predicate(frame):
                return frame
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            frame = await self.recv(deadline - asyncio.get_running_loop().time())
            if predicate(frame):
                return frame

    async def wait_event(
        self, event: Frame, wait_s: float = 10, *, new: bool = False, after: int = 0
    ) -> Frame:
        """The first batch holding ``event`` exactly."""
        return await self.wait_for(lambda f: event in f.get("events", ()), wait_s, new=new, after=after)

    async def welcome(self) -> Frame:
        return await self.wait_for(lambda f: f["type"] == "welcome")

    async def gift(self, gift_id: str, count: int = 1, key: str | None = None) -> Frame:
        """Send a gift and return its ``gift_ack`` or ``error`` frame."""
        key = key or unique("k")
        sent_at = len(self.frames)
        await self.send({"type": "gift", "gift_id": gift_id, "count": count, "idempotency_key": key})
        return await self.answer(key, after=sent_at)

    async def answer(self, key: str, after: int = 0) -> Frame:
        """The first ``gift_ack`` or ``error`` for ``key`` among the frames from index ``after``."""
        return await self.wait_for(
            lambda f: f["type"] in ("gift_ack", "error") and f.get("idempotency_key") == key, after=after
        )

    def events(self, kind: str | None = None) -> list[Frame]:
        """Every event of every batch received so far, in order."""
        events = [event for frame in self.frames if frame["type"] == "batch" for event in frame["events"]]
        return [event for event in events if kind is None or event["type"] == kind]

    def gift_count(self) -> int:
        return sum(event["count"] for event in self.events("gift"))

    async def wait_gift_count(self, total: int, wait_s: float = 15) -> list[Frame]:
        """Read until the gift events received add up to ``total`` counts; returns them."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while self.gift_count() < total:
            await self.recv(deadline - asyncio.get_running_loop().time())
        return self.events("gift")

    async def closed(self, wait_s: float = 10) -> tuple[int | None, str]:
        """Read until the server closes; returns the close code and reason."""
        try:
            while True:
                await self.recv(wait_s)
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")

    async def close(self) -> None:
        await self.ws.close()
