"""HTTP routes of moderation: deleting chat messages, mutes and bans in a creator's lives,
and the creator's moderation log (the rules are in ``server.moderation``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import moderation
from server.api.context import JSON, caller, context, query_int, read_json
from server.auth import CHAT_ROLES
from server.domain.chat import MuteRequest
from server.domain.ids import check_id
from server.domain.requests import parse


def _target(request: Request) -> tuple[str, str, str]:
    """The caller's id, the room and the user the action is about, checked."""
    principal = caller(request, *CHAT_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    return principal.user_id, room_id, check_id(request.path_params["user_id"], "user_id")


async def delete_chat(request: Request) -> Response:
    """204 once deleted, and again for a message deleted before."""
    principal = caller(request, *CHAT_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    event_id = check_id(request.path_params["event_id"], "event_id")
    await moderation.delete_chat(context(request).store, principal.user_id, room_id, event_id)
    return Response(status_code=204)


async def put_mute(request: Request) -> Response:
    actor, room_id, user_id = _target(request)
    body = parse(await read_json(request), MuteRequest)
    await moderation.mute(context(request).store, actor, room_id, user_id, body.seconds)
    return Response(status_code=204)


async def delete_mute(request: Request) -> Response:
    actor, room_id, user_id = _target(request)
    await moderation.unmute(context(request).store, actor, room_id, user_id)
    return Response(status_code=204)


async def put_ban(request: Request) -> Response:
    actor, room_id, user_id = _target(request)
    await moderation.ban(context(request).store, actor, room_id, user_id)
    return Response(status_code=204)


async def delete_ban(request: Request) -> Response:
    actor, room_id, user_id = _target(request)
    await moderation.unban(context(request).store, actor, room_id, user_id)
    return Response(status_code=204)


async def list_bans(request: Request) -> JSON:
    principal = caller(request, "creator")
    ctx = context(request)
    ids = await ctx.store.moderation.bans(principal.user_id)
    return JSON({"bans": [{"id": user_id, "name": await ctx.gifts.name_of(user_id)} for user_id in ids]})


async def moderation_log(request: Request) -> JSON:
    principal = caller(request, "creator")
    limit = query_int(request, "limit", 50, 1, 100)
    entries, cursor = await context(request).store.moderation.read_log(
        principal.user_id, request.query_params.get("cursor"), limit
    )
    return JSON({"entries": entries, "next_cursor": cursor})


routes = [
    Route("/v1/rooms/{room_id}/chat/{event_id}", delete_chat, methods=["DELETE"]),
    Route("/v1/rooms/{room_id}/mutes/{user_id}", put_mute, methods=["PUT"]),
    Route("/v1/rooms/{room_id}/mutes/{user_id}", delete_mute, methods=["DELETE"]),
    Route("/v1/rooms/{room_id}/bans/{user_id}", put_ban, methods=["PUT"]),
    Route("/v1/rooms/{room_id}/bans/{user_id}", delete_ban, methods=["DELETE"]),
    Route("/v1/creator/bans", list_bans, methods=["GET"]),
    Route("/v1/creator/moderation-log", moderation_log, methods=["GET"]),
]
