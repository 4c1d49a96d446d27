"""``POST /v1/rooms/{room_id}/likes``: a viewer's taps on a live room, batched by the client."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, caller, context, read_json
from server.auth import GIFTING_ROLES
from server.domain.ids import check_id
from server.domain.requests import LikeRequest, parse


async def send_likes(request: Request) -> JSON:
    """202 with the likes accepted: those over the user's like rate are dropped, not refused.
    The same ``Hub.like`` as the room socket's ``like`` frame."""
    principal = caller(request, *GIFTING_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    body = parse(await read_json(request), LikeRequest)
    ctx = context(request)
    name = principal.name or await ctx.gifts.name_of(principal.user_id)
    accepted = await ctx.hub.like(principal.user_id, name, room_id, body.count)
    return JSON({"room_id": room_id, "accepted": accepted, "dropped": body.count - accepted}, status_code=202)


routes = [Route("/v1/rooms/{room_id}/likes", send_likes, methods=["POST"])]
