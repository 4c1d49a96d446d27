"""``/v1/rooms/{room_id}/ws``: a viewer's, overlay's or gifter's live connection to a room.

The endpoint authenticates, joins the hub and then reads client frames, each type with one
handler (``FRAME_HANDLERS``) calling the same service as its HTTP form: a gift goes through
``GiftService`` as ``POST /v1/rooms/{id}/gifts`` does and a chat message through
``ChatService``, each acknowledged to the sender only; likes go to the hub's per-tick tally
and are not answered; a ping gets a pong. Everything else the connection receives comes
from the hub's tick. See docs/PROTOCOL.md.

``RoomSockets`` routes these connections straight to the endpoint as plain ASGI, ahead of
Starlette: an idle connection keeps its whole call stack alive for as long as it stays
open, and Starlette's middleware, router and ``WebSocket`` object would cost several KiB
on each of thousands of them. Every other request goes to the Starlette app.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from server import metrics
from server.api import request_ids
from server.api.answers import answer, client_error
from server.api.context import Context, now_ms
from server.api.limits import ClientLimiter
from server.auth import CHAT_ROLES, GIFTING_ROLES, Principal
from server.chat import ChatOutcome
from server.domain.ids import check_id
from server.errors import (
    EngineUnavailable,
    Forbidden,
    GiftingError,
    InvalidRequest,
    NotFound,
    RateLimited,
    TooManyConnections,
    Unauthorized,
)
from server.gifting import GiftOutcome
from server.hub.hub import BanCheck
from server.hub.outlet import SCOPE_EXTENSION, GiftingWebSocketProtocol
from server.hub.protocol import (
    Close,
    chat_frame,
    encode,
    error_frame,
    gift_frame,
    like_frame,
    negotiate,
    ping_frame,
    read,
    readable_client_id,
    readable_key,
)
from server.hub.room import LocalRoom, Viewer
from server.store import ENGINE_ERRORS
from server.store.connection import engine_budget
from server.store.overlays import fingerprint

log = logging.getLogger(__name__)

PATH = re.compile(r"^/v1/rooms/([^/]+)/ws$")
OVERLAY_PATH = re.compile(r"^/v1/overlay/([^/]+)/ws$")
# Frames of one connection handled at once; past it, it is not read until its oldest is answered.
MAX_FRAMES_IN_FLIGHT = 32
T = TypeVar("T")
# What a handshake answers with a close code rather than a server error.
REFUSALS: tuple[type[Exception], ...] = (GiftingError, *ENGINE_ERRORS)
# A connection sending this many frames that do not parse or validate within a minute is closed.
MAX_INVALID_FRAMES = 10
INVALID_WINDOW_S = 60.0


class RoomSockets:
    """The ASGI entry point: room sockets to ``room_socket``, everything else to ``app``."""

    def __init__(self, app: ASGIApp, context: Context | None = None) -> None:
        self.app = app
        self.context = context
        self.limiter: ClientLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.context is not None:
            request_ids.adopt(scope)
            if match := PATH.match(scope["path"]):
                await room_socket(
                    self.context, scope, receive, send, match[1], overlay=False, limiter=self.limiter
                )
                return
            if match := OVERLAY_PATH.match(scope["path"]):
                await room_socket(
                    self.context, scope, receive, send, match[1], overlay=True, limiter=self.limiter
                )
                return
        await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class Admitted:
    viewer: Viewer
    room: LocalRoom
    principal: Principal


async def room_socket(
    ctx: Context,
    scope: Scope,
    receive: Receive,
    send: Send,
    target: str,
    *,
    overlay: bool,
    limiter: ClientLimiter | None = None,
) -> None:
    """A room's socket; with ``overlay``, ``target`` is an overlay token and the socket
    watches that creator's live room, read-only and not counted as a viewer."""
    if (await receive())["type"] != "websocket.connect":
        return
    with ctx.hub.joining():
        admitted = await admit(ctx, scope, send, target, overlay, limiter)
    if admitted is None:
        return
    socket = Socket(ctx, admitted.viewer, admitted.principal)
    in_flight = InFlight(socket, MAX_FRAMES_IN_FLIGHT)
    connections = metrics.CONNECTIONS[overlay]
    connections.inc()
    try:
        while True:
            if in_flight.full:
                await in_flight.room()  # back-pressure: the frames wait unread
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                kind, fields = read(data, socket.viewer.encoding)
            except InvalidRequest as exc:
                metrics.WS_INVALID_FRAMES.inc()
                in_flight.answer(socket.refusal(exc))
            else:
                in_flight.start(handle(socket, kind, fields))
    finally:
        try:
            # A frame taken is carried through (a debited gift is delivered) even once its
            # answer can no longer be sent; its sender can replay it by its key.
            await in_flight.finish()
        finally:
            connections.dec()
            ctx.hub.leave(socket.viewer)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a frame is answered with; ``invalid`` marks the refusal of an invalid frame,
    which counts towards the close for too many."""

    frame: dict[str, Any]
    invalid: bool = False


class InFlight:
    """A connection's frames being handled, each by its own task, answered in the order
    they came.

    Every frame read in one turn of the event loop starts at once, so the gifts a client
    sent together share the engine's round trips (``store.batch``) instead of waiting for
    each other. A frame's answer is written once every frame before it is answered. At most
    ``limit`` frames are in flight: past that the connection is not read (its frames wait in
    the transport) until the oldest is answered. The outlet knows how many are unanswered,
    so that a close it holds back (``finish``) waits for them.
    """

    __slots__ = ("_queue", "_room", "limit", "socket")

    def __init__(self, socket: Socket, limit: int) -> None:
        self.socket = socket
        self.limit = limit
        self._queue: deque[asyncio.Future[Reply | None]] = deque()
        self._room: asyncio.Future[None] | None = None

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.limit

    def start(self, handling: Coroutine[Any, Any, Reply | None]) -> None:
        task = asyncio.get_running_loop().create_task(handling)
        self._queue.append(task)
        self.socket.viewer.outlet.answering(len(self._queue))
        task.add_done_callback(self._release)

    def answer(self, reply: Reply) -> None:
        """Answer a frame that needed no handling: at once unless frames before it are in flight."""
        if not self._queue:
            self.socket.answer([reply])
            return
        done: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        done.set_result(reply)
        self._queue.append(done)
        self.socket.viewer.outlet.answering(len(self._queue))

    def _release(self, _: object) -> None:
        """Write the answers now due, in one write: those of the oldest frames, up to the
        first in flight."""
        queue = self._queue
        due: list[Reply] = []
        while queue and queue[0].done():
            handled = queue.popleft()
            if handled.cancelled():
                continue
            error = handled.exception()
            if error is not None:
                log.error(
                    "unhandled error on a frame on /v1/rooms/%s/ws",
                    self.socket.viewer.room_id,
                    exc_info=error,
                )
                continue
            reply = handled.result()
            if reply is not None:
                due.append(reply)
        if due:
            self.socket.answer(due)
        self.socket.viewer.outlet.answering(len(queue))
        if self._room is not None and not self._room.done() and len(queue) < self.limit:
            self._room.set_result(None)

    async def room(self) -> None:
        """Wait until fewer than ``limit`` frames are in flight."""
        while self.full:
            self._room = asyncio.get_running_loop().create_future()
            await self._room
        self._room = None

    async def finish(self) -> None:
        """Wait for every frame in flight to be handled."""
        if self._queue:
            await asyncio.wait(list(self._queue))


@dataclass(slots=True)
class Socket:
    """One admitted connection, as its frame handlers see it."""

    ctx: Context
    viewer: Viewer
    principal: Principal
    # When its recent invalid frames came (time.monotonic()).
    invalid: list[float] = field(default_factory=list)

    def refusal(
        self, error: GiftingError, idempotency_key: str | None = None, *, client_id: str | None = None
    ) -> Reply:
        """The answer to a frame refused with ``error``."""
        frame = error_frame(error, idempotency_key, client_id=client_id)
        return Reply(frame, invalid=isinstance(error, InvalidRequest))

    def answer(self, replies: list[Reply]) -> None:
        """Write the answers of frames, in order, in one write (one system call for the
        answers due together); an invalid frame's counts towards the close for too many."""
        viewer = self.viewer
        frames = [encode(reply.frame, viewer.encoding) for reply in replies]
        if viewer.outlet.write(frames[0] if len(frames) == 1 else b"".join(frames)):
            for frame in frames:
                metrics.frames_sent(1, len(frame))
        for reply in replies:
            if reply.invalid:
                now = time.monotonic()
                self.invalid = [t for t in self.invalid if now - t < INVALID_WINDOW_S] + [now]
                if len(self.invalid) >= MAX_INVALID_FRAMES:
                    viewer.outlet.close(Close.INVALID_FRAMES, "too many invalid frames")


async def handle(socket: Socket, kind: str, fields: dict[str, Any]) -> Reply | None:
    """A frame's answer from its type's handler (None for a frame that is not answered).

    Each frame is handled in its own task (``InFlight``), so the log fields a handler binds
    (the gift's sender, room and event) are its own and end with it.
    """
    try:
        return await FRAME_HANDLERS[kind](socket, fields)
    except InvalidRequest as exc:
        metrics.WS_INVALID_FRAMES.inc()
        return socket.refusal(exc)


async def on_ping(socket: Socket, fields: dict[str, Any]) -> Reply:
    ping_frame(fields)
    return PONG


async def on_gift(socket: Socket, fields: dict[str, Any]) -> Reply:
    """A gift, through the same ``answer`` as ``POST /v1/rooms/{id}/gifts``, answered to
    this connection only; a refusal carries the frame's key whenever it is readable."""
    key = readable_key(fields)
    where = f"a gift frame on /v1/rooms/{socket.viewer.room_id}/ws"
    try:
        outcome = await answer(metrics.WS, gift_from(socket, fields), where, metrics.GIFT_ANSWERS)
    except GiftingError as exc:
        return socket.refusal(exc, key)
    return Reply(
        {
            "type": "gift_ack",
            "idempotency_key": key,
            "gift_event_id": outcome.gift_event_id,
            "coins": outcome.coins,
        }
    )


async def gift_from(socket: Socket, fields: dict[str, Any]) -> GiftOutcome:
    request = gift_frame(fields)
    viewer = socket.viewer
    if viewer.overlay:
        raise Forbidden("an overlay connection is read-only: it cannot send gifts")
    socket.principal.require(*GIFTING_ROLES)
    with engine_budget(socket.ctx.settings.engine_timeout_ms / 1000):
        return await socket.ctx.gifts.send(
            viewer.user_id, viewer.room_id, request, now_ms(), sender_name=viewer.name
        )


async def on_chat(socket: Socket, fields: dict[str, Any]) -> Reply:
    """A chat message, through the same ``ChatService.post`` as ``POST /v1/rooms/{id}/chat``,
    acknowledged to this connection only; a refusal carries the frame's ``client_id``
    whenever it is readable."""
    client_id = readable_client_id(fields)
    where = f"a chat frame on /v1/rooms/{socket.viewer.room_id}/ws"
    try:
        outcome = await answer(metrics.WS, chat_from(socket, fields), where, metrics.CHAT_ANSWERS)
    except GiftingError as exc:
        return socket.refusal(exc, client_id=client_id)
    return Reply({"type": "chat_ack", "client_id": outcome.client_id, "event_id": outcome.event_id})


async def chat_from(socket: Socket, fields: dict[str, Any]) -> ChatOutcome:
    request = chat_frame(fields)
    viewer = socket.viewer
    if viewer.overlay:
        raise Forbidden("an overlay connection is read-only: it cannot chat")
    socket.principal.require(*CHAT_ROLES)
    with engine_budget(socket.ctx.settings.engine_timeout_ms / 1000):
        return await socket.ctx.chat.post(viewer.user_id, viewer.room_id, request, sender_name=viewer.name)


async def on_like(socket: Socket, fields: dict[str, Any]) -> Reply | None:
    """Likes, through the same ``Hub.like`` as ``POST /v1/rooms/{id}/likes``. Not answered:
    the room's ``likes`` events show them, and likes over the user's rate are dropped
    without an error, so that a tapping client is never sent a flood of them."""
    request = like_frame(fields)
    viewer = socket.viewer
    try:
        if viewer.overlay:
            raise Forbidden("an overlay connection is read-only: it cannot send likes")
        await socket.ctx.hub.like(viewer.user_id, viewer.name, viewer.room_id, request.count)
    except Exception as exc:
        return socket.refusal(client_error(exc, f"a like frame on /v1/rooms/{viewer.room_id}/ws"))
    return None


PONG = Reply({"type": "pong"})
# One handler per client frame type (``hub.protocol.FRAME_TYPES`` holds each one's rules).
FRAME_HANDLERS: dict[str, Callable[[Socket, dict[str, Any]], Awaitable[Reply | None]]] = {
    "gift": on_gift,
    "ping": on_ping,
    "chat": on_chat,
    "like": on_like,
}


async def admit(
    ctx: Context, scope: Scope, send: Send, target: str, overlay: bool, limiter: ClientLimiter | None = None
) -> Admitted | None:
    """Check the handshake, authenticate, take a token of the address's request rate and a
    slot of the user's connection limit, accept and join the hub; None if refused.

    The two limits live in different cluster slots, so they are two scripts; both are queued
    in the same turn of the event loop, with the user's name when it is not cached and, when
    this process serves the room already, whether its creator banned the user, and go out in
    one pipeline (``store.batch``): one engine round trip before the join, and often none in
    it. An address over its rate is refused first, whatever else was wrong, and a slot taken
    for a connection then refused is given back before the refusal is written, so a refused
    handshake holds none."""
    handshake = negotiate(list(scope.get("subprotocols", [])))
    origin = dict(scope["headers"]).get(b"origin", b"").decode("latin-1") or None
    allowed = ctx.settings.allowed_origins
    if allowed and origin is not None and origin.rstrip("/") not in allowed:
        log.info("websocket refused: origin %r is not allowed", origin)
        metrics.WS_REFUSALS.labels("1008", "origin_not_allowed").inc()
        await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
        return None
    outlet = scope.get("extensions", {}).get(SCOPE_EXTENSION)
    if not isinstance(outlet, GiftingWebSocketProtocol):
        log.error("websocket refused: run the server with `gifting-server` (its WebSocket protocol)")
        metrics.WS_REFUSALS.labels("1011", "no_outlet").inc()
        await send({"type": "websocket.close", "code": 1011})
        return None
    query = parse_qs(scope["query_string"].decode("latin-1"))

    def param(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    def refuse(error: GiftingError, code: int) -> None:
        metrics.WS_REFUSALS.labels(str(int(code)), error.code).inc()
        outlet.write(encode(error_frame(error), handshake.encoding))
        outlet.close(code, error.code)

    # Counted before the accept; refused after it, so that the client learns why.
    rate = limiter.take(scope) if limiter is not None else None
    over_rate: RateLimited | None = None
    if overlay and rate is not None:  # an overlay's lookups read the engine: not over the rate
        over_rate, rate = await rate, None
    refusal: Exception | None = None
    claim: Awaitable[str | None] | None = None
    naming: Awaitable[str] | None = None
    ban: BanCheck | None = None
    try:
        if over_rate is None:
            if overlay:
                principal, room_id = await overlay_target(ctx, target)
            else:  # no engine call: what is queued next goes out with the rate's
                principal, room_id = await token_target(ctx, param("token") or handshake.token, target)
            claim = ctx.hub.claim(principal.user_id)
            naming = ctx.gifts.name_of(principal.user_id) if not principal.name else None
            ban = None if overlay else ctx.hub.ban_check(room_id, principal.user_id)
    except REFUSALS as exc:
        refusal = exc
    if rate is not None:
        over_rate = await rate
    slot, refusal = await outcome_of(claim, refusal)
    name, refusal = await outcome_of(naming, refusal)
    _, refusal = await outcome_of(ban.answer if ban is not None else None, refusal)
    if slot is not None and (over_rate is not None or refusal is not None):
        await give_back(ctx, principal.user_id, slot)
        slot = None
    try:
        await send({"type": "websocket.accept", "subprotocol": handshake.subprotocol})
    except Exception:  # the client left during the handshake
        if slot is not None:
            await give_back(ctx, principal.user_id, slot)
        raise
    if over_rate is not None:
        refuse(over_rate, Close.TOO_MANY)
        return None
    try:
        if refusal is not None:
            raise refusal
        viewer = Viewer(
            outlet,
            principal.user_id,
            principal.name or name or principal.user_id,
            handshake.encoding,
            room_id,
            overlay=overlay,
            overlay_key=fingerprint(target) if overlay else "",
        )
        ctx.hub.hold(viewer, slot)
        try:
            room = await ctx.hub.join(viewer, param("since"), param("epoch"), ban)
        except BaseException:
            ctx.hub.leave(viewer)  # frees the slot it claimed
            raise
    except Unauthorized as exc:
        refuse(exc, Close.UNAUTHORIZED)
    except InvalidRequest as exc:
        refuse(exc, Close.INVALID_FRAMES)
    except NotFound as exc:
        refuse(exc, Close.ROOM_NOT_FOUND)
    except TooManyConnections as exc:
        refuse(exc, Close.TOO_MANY)
    except Forbidden as exc:  # banned
        refuse(exc, Close.BANNED)
    except GiftingError as exc:  # room_ended
        refuse(exc, Close.ROOM_GONE)
    except ENGINE_ERRORS as exc:
        metrics.engine_error(exc)
        refuse(EngineUnavailable("the engine is unavailable; retry shortly"), Close.ENGINE_UNAVAILABLE)
    else:
        return Admitted(viewer, room, principal)
    return None


async def overlay_target(ctx: Context, token: str) -> tuple[Principal, str]:
    """The creator an overlay token belongs to, as a read-only principal, and their live room."""
    creator_id = await ctx.store.overlays.creator_of(token)
    if creator_id is None:
        raise Unauthorized("unknown overlay token: it may have been regenerated")
    room = await ctx.store.rooms.live_room_of(creator_id)
    if room is None:
        raise NotFound(f"{creator_id} is not live right now", code="not_live")
    return Principal(creator_id, "overlay"), room.room_id


async def token_target(ctx: Context, token: str | None, target: str) -> tuple[Principal, str]:
    """The principal of a viewer's token and the room it asks for, with no engine call."""
    if not token:
        raise Unauthorized("missing token: pass ?token=<jwt> or offer a 'bearer.<jwt>' subprotocol")
    await ctx.tokens.prepare(token)  # an OIDC key not held yet is fetched first
    principal = ctx.tokens.token(token)
    return principal, check_id(target, "room_id")


async def outcome_of(
    pending: Awaitable[T] | None, refusal: Exception | None
) -> tuple[T | None, Exception | None]:
    """What ``pending`` gave, and the handshake's refusal: the first one met stands."""
    if pending is None:
        return None, refusal
    try:
        return await pending, refusal
    except REFUSALS as exc:
        return None, refusal or exc


async def give_back(ctx: Context, user_id: str, slot: str) -> None:
    """Free the slot taken for a connection then refused; it expires if the engine is down."""
    try:
        await ctx.hub.unclaim(user_id, slot)
    except ENGINE_ERRORS as exc:
        metrics.engine_error(exc)
        log.warning("a refused connection's slot is left to expire: engine unavailable (%s)", exc)
