"""``/v1/rooms/{room_id}/ws``: a viewer's, overlay's or gifter's live connection to a room.

The endpoint authenticates, joins the hub and then reads client frames: gifts go through
the same ``GiftService`` as ``POST /v1/rooms/{id}/gifts``, acknowledged to the sender only.
Everything else the connection receives comes from the hub's tick. See docs/PROTOCOL.md.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from server.api.context import context, now_ms
from server.auth import principal_from_token
from server.domain.ids import check_id
from server.errors import EngineUnavailable, GiftingError, InvalidRequest, NotFound, Unauthorized
from server.hub.outlet import SCOPE_EXTENSION, GiftingWebSocketProtocol
from server.hub.protocol import Close, Ping, decode, encode, error_frame, negotiate
from server.hub.room import Viewer

log = logging.getLogger(__name__)

GIFTING_ROLES = ("viewer", "creator")
# A connection sending this many frames that do not parse or validate within a minute is closed.
MAX_INVALID_FRAMES = 10
INVALID_WINDOW_S = 60.0


async def room_socket(websocket: WebSocket) -> None:
    ctx = context(websocket)
    handshake = negotiate(list(websocket.scope.get("subprotocols", [])))
    origin = websocket.headers.get("origin")
    allowed = ctx.settings.allowed_origins
    if allowed and origin is not None and origin.rstrip("/") not in allowed:
        log.info("websocket refused: origin %r is not allowed", origin)
        await websocket.close(code=1008)  # before accept: the handshake is answered with 403
        return
    outlet = websocket.scope.get("extensions", {}).get(SCOPE_EXTENSION)
    if not isinstance(outlet, GiftingWebSocketProtocol):
        log.error("websocket refused: run the server with `gifting-server` (its WebSocket protocol)")
        await websocket.close(code=1011)
        return
    await websocket.accept(subprotocol=handshake.subprotocol)
    encoding = handshake.encoding

    def refuse(error: GiftingError, code: int) -> None:
        outlet.write(encode(error_frame(error), encoding))
        outlet.close(code, error.code)

    try:
        token = websocket.query_params.get("token") or handshake.token
        if not token:
            raise Unauthorized("missing token: pass ?token=<jwt> or offer a 'bearer.<jwt>' subprotocol")
        principal = principal_from_token(token, ctx.settings.jwt_secret)
        room_id = check_id(websocket.path_params["room_id"], "room_id")
        name = principal.name or await ctx.gifts.name_of(principal.user_id)
        viewer = Viewer(outlet, principal.user_id, name, encoding, room_id)
        room = await ctx.hub.join(
            viewer, websocket.query_params.get("since"), websocket.query_params.get("epoch")
        )
    except Unauthorized as exc:
        return refuse(exc, Close.UNAUTHORIZED)
    except InvalidRequest as exc:
        return refuse(exc, Close.INVALID_FRAMES)
    except NotFound as exc:
        return refuse(exc, Close.ROOM_NOT_FOUND)
    except GiftingError as exc:  # room_ended
        return refuse(exc, Close.ROOM_GONE)
    except (RedisError, OSError):
        return refuse(EngineUnavailable("the engine is unavailable; retry shortly"), Close.ENGINE_UNAVAILABLE)

    invalid: list[float] = []
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                frame = decode(data, encoding)
            except InvalidRequest as exc:
                now = time.monotonic()
                invalid = [t for t in invalid if now - t < INVALID_WINDOW_S] + [now]
                viewer.send(error_frame(exc))
                if len(invalid) >= MAX_INVALID_FRAMES:
                    outlet.close(Close.INVALID_FRAMES, "too many invalid frames")
                continue
            if isinstance(frame, Ping):
                viewer.send({"type": "pong"})
                continue
            try:
                principal.require(*GIFTING_ROLES)
                outcome = await ctx.gifts.send(
                    principal.user_id,
                    room_id,
                    frame,
                    now_ms(),
                    sender_name=name,
                    room=None if room.ended else room.room,
                )
            except GiftingError as exc:
                viewer.send(error_frame(exc, frame.idempotency_key))
            except (RedisError, OSError):
                error = EngineUnavailable("the engine is unavailable; retry shortly")
                viewer.send(error_frame(error, frame.idempotency_key))
            else:
                viewer.send(
                    {
                        "type": "gift_ack",
                        "idempotency_key": frame.idempotency_key,
                        "gift_event_id": outcome.gift_event_id,
                        "coins": outcome.coins,
                    }
                )
    finally:
        ctx.hub.leave(viewer)


routes = [WebSocketRoute("/v1/rooms/{room_id}/ws", room_socket)]
