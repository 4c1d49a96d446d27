"""The room WebSocket protocol's rules, apart from any I/O: subprotocols, close codes,
decoding client frames and encoding server frames once for every connection.

``docs/PROTOCOL.md`` is the description for client authors; this module is what enforces it.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from server.domain.chat import ChatRequest
from server.domain.ids import IDEMPOTENCY_KEY_PATTERN
from server.domain.requests import GiftRequest, LikeRequest, parse
from server.errors import GiftingError, InvalidRequest

JSON = "gifting.v1.json"
MSGPACK = "gifting.v1.msgpack"
SUBPROTOCOLS = (JSON, MSGPACK)
TOKEN_PREFIX = "bearer."


class Close(enum.IntEnum):
    """Close codes the server sends, besides the ones the WebSocket layer itself uses
    (1009 frame too large, 1007 invalid UTF-8, 1011 heartbeat timeout)."""

    ROOM_ENDED = 1000
    SERVER_RESTARTING = 1012
    ENGINE_UNAVAILABLE = 1013
    INVALID_FRAMES = 4400
    # A bad or missing token on connect; an overlay whose token was regenerated, at once.
    UNAUTHORIZED = 4401
    # The room's creator banned the user: at once on an open connection, or on connect.
    BANNED = 4403
    ROOM_NOT_FOUND = 4404
    TOO_SLOW = 4408
    ROOM_GONE = 4410
    # Over the per-address handshake rate (rate_limited) or the per-user connection limit
    # (too_many_connections): the error frame and the close reason say which.
    TOO_MANY = 4429


@dataclass(frozen=True)
class Handshake:
    """What a client offered in ``Sec-WebSocket-Protocol``: a subprotocol and maybe a token."""

    subprotocol: str | None
    token: str | None

    @property
    def encoding(self) -> str:
        return self.subprotocol or JSON


def negotiate(offered: list[str]) -> Handshake:
    """The first gifting subprotocol offered (none means JSON), and a ``bearer.<jwt>`` entry."""
    subprotocol = next((p for p in offered if p in SUBPROTOCOLS), None)
    token = next((p[len(TOKEN_PREFIX) :] for p in offered if p.startswith(TOKEN_PREFIX)), None)
    return Handshake(subprotocol, token)


@dataclass(frozen=True)
class Ping:
    pass


ClientFrame = GiftRequest | Ping | ChatRequest | LikeRequest
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def gift_frame(fields: dict[str, Any]) -> GiftRequest:
    return parse(fields, GiftRequest)


def ping_frame(fields: dict[str, Any]) -> Ping:
    if fields:
        raise InvalidRequest(f"unknown field(s) in ping: {', '.join(map(str, fields))}")
    return Ping()


def chat_frame(fields: dict[str, Any]) -> ChatRequest:
    """A chat message's fields (its text is checked by ``domain.chat`` when it is posted)."""
    return parse(fields, ChatRequest)


def like_frame(fields: dict[str, Any]) -> LikeRequest:
    return parse(fields, LikeRequest)


# Each client frame type and the rules of its fields; ``api.ws`` has one handler per type.
FRAME_TYPES: dict[str, Callable[[dict[str, Any]], ClientFrame]] = {
    "gift": gift_frame,
    "ping": ping_frame,
    "chat": chat_frame,
    "like": like_frame,
}


def read(data: str | bytes, encoding: str) -> tuple[str, dict[str, Any]]:
    """A client frame's type and its other fields, not yet checked; ``InvalidRequest`` if it
    is no object of a known type."""
    if encoding == MSGPACK:
        if isinstance(data, str):
            raise InvalidRequest("this connection speaks gifting.v1.msgpack: send binary frames")
        try:
            body = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:
            raise InvalidRequest(f"the frame is not valid msgpack: {exc}") from None
    else:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"the frame is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("a frame must be an object with a 'type' field")
    kind = body.pop("type", None)
    if not isinstance(kind, str) or kind not in FRAME_TYPES:
        expected = " or ".join(map(repr, FRAME_TYPES))
        raise InvalidRequest(f"unknown frame type {kind!r}; expected {expected}")
    return kind, body


def decode(data: str | bytes, encoding: str) -> ClientFrame:
    """A client frame as a request, or ``InvalidRequest`` saying what is wrong with it: every
    rule in one call, as ``api.ws`` applies them (``read``, then the type's handler)."""
    kind, fields = read(data, encoding)
    return FRAME_TYPES[kind](fields)


def readable_key(fields: dict[str, Any]) -> str | None:
    """The frame's ``idempotency_key`` if it is one (a string of the key pattern), so that a
    refusal of the frame can name the tap it answers even when other fields are wrong."""
    key = fields.get("idempotency_key")
    return key if isinstance(key, str) and _KEY.match(key) else None


def readable_client_id(fields: dict[str, Any]) -> str | None:
    """A chat frame's ``client_id`` if it is one (a string of the key pattern), so that a
    refusal of the frame can name the message it answers even when other fields are wrong."""
    client_id = fields.get("client_id")
    return client_id if isinstance(client_id, str) and _KEY.match(client_id) else None


def error_frame(
    error: GiftingError, idempotency_key: str | None = None, *, client_id: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message, **error.details}
    if idempotency_key is not None:
        frame["idempotency_key"] = idempotency_key
    if client_id is not None:
        frame["client_id"] = client_id
    return frame


def encode(message: dict[str, Any], encoding: str) -> bytes:
    """A message as one complete WebSocket frame, ready to write to any connection."""
    if encoding == MSGPACK:
        return ws_frame(msgpack.packb(message), binary=True)
    return ws_frame(orjson.dumps(message), binary=False)


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """An unfragmented, unmasked server-to-client frame (RFC 6455 section 5.2).

    Server frames are never masked and carry no extension bits, so the same bytes are valid
    on every connection: the frame is built once and written to each one.
    """
    head = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", head, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", head, 126, size)
    else:
        header = struct.pack("!BBQ", head, 127, size)
    return header + payload
