"""HTTP routes of chat: posting a message, and a creator's moderators and chat settings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import metrics
from server.api.answers import answer
from server.api.context import JSON, caller, context, read_json
from server.auth import CHAT_ROLES
from server.chat import ChatOutcome
from server.domain.chat import ChatRequest, ChatSettings
from server.domain.ids import check_id
from server.domain.requests import parse
from server.errors import InvalidRequest, NotFound
from server.store.moderation import ADD_MODERATOR, REMOVE_MODERATOR


async def post_chat(request: Request) -> JSON:
    """One chat message: 201 when posted, 200 with ``Idempotent-Replayed`` for a resend."""
    outcome = await answer(
        metrics.HTTP, chat_from(request), f"{request.method} {request.url.path}", metrics.CHAT_ANSWERS
    )
    if outcome.replayed:
        return JSON(outcome.to_dict(), headers={"Idempotent-Replayed": "true"})
    return JSON(outcome.to_dict(), status_code=201)


async def chat_from(request: Request) -> ChatOutcome:
    principal = caller(request, *CHAT_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    body = parse(await read_json(request), ChatRequest)
    return await context(request).chat.post(principal.user_id, room_id, body, sender_name=principal.name)


async def list_moderators(request: Request) -> JSON:
    principal = caller(request, "creator")
    ctx = context(request)
    ids = await ctx.store.chat.moderators(principal.user_id)
    moderators = [{"id": user_id, "name": await ctx.gifts.name_of(user_id)} for user_id in ids]
    return JSON({"moderators": moderators})


async def add_moderator(request: Request) -> Response:
    """204 whether the user was a moderator already or not: the call says what should be."""
    principal = caller(request, "creator")
    user_id = check_id(request.path_params["user_id"], "user_id")
    if user_id == principal.user_id:
        raise InvalidRequest("a creator moderates their own lives already")
    store = context(request).store
    if await store.chat.add_moderator(principal.user_id, user_id):
        await store.moderation.log(principal.user_id, ADD_MODERATOR, principal.user_id, user_id)
    return Response(status_code=204)


async def remove_moderator(request: Request) -> Response:
    """204 once removed; 404 ``moderator_not_found`` if the user was no moderator."""
    principal = caller(request, "creator")
    user_id = check_id(request.path_params["user_id"], "user_id")
    store = context(request).store
    if not await store.chat.remove_moderator(principal.user_id, user_id):
        raise NotFound(f"{user_id!r} is not one of your moderators", code="moderator_not_found")
    await store.moderation.log(principal.user_id, REMOVE_MODERATOR, principal.user_id, user_id)
    return Response(status_code=204)


async def get_chat_settings(request: Request) -> JSON:
    principal = caller(request, "creator")
    return JSON((await context(request).store.chat.settings(principal.user_id)).to_dict())


async def put_chat_settings(request: Request) -> JSON:
    """Replace the creator's chat settings (a field left out takes its default)."""
    principal = caller(request, "creator")
    settings = parse(await read_json(request), ChatSettings).normalised()
    await context(request).store.chat.set_settings(principal.user_id, settings)
    return JSON(settings.to_dict())


routes = [
    Route("/v1/rooms/{room_id}/chat", post_chat, methods=["POST"]),
    Route("/v1/creator/moderators", list_moderators, methods=["GET"]),
    Route("/v1/creator/moderators/{user_id}", add_moderator, methods=["PUT"]),
    Route("/v1/creator/moderators/{user_id}", remove_moderator, methods=["DELETE"]),
    Route("/v1/creator/chat-settings", get_chat_settings, methods=["GET"]),
    Route("/v1/creator/chat-settings", put_chat_settings, methods=["PUT"]),
]
