"""HTTP routes of follows and shares: follow and unfollow a creator, a creator's public
profile, the creators the caller follows, and a share of a live room (``social.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, caller, context, query_int
from server.auth import GIFTING_ROLES
from server.domain.ids import check_id


async def follow(request: Request) -> JSON:
    principal = caller(request, *GIFTING_ROLES)
    creator_id = check_id(request.path_params["creator_id"], "creator_id")
    return JSON(await context(request).social.follow(principal.user_id, creator_id, principal.name))


async def unfollow(request: Request) -> JSON:
    principal = caller(request, *GIFTING_ROLES)
    creator_id = check_id(request.path_params["creator_id"], "creator_id")
    return JSON(await context(request).social.unfollow(principal.user_id, creator_id))


async def get_creator(request: Request) -> JSON:
    """Public; with a bearer token (which must then be valid), ``following`` is the caller's."""
    creator_id = check_id(request.path_params["creator_id"], "creator_id")
    caller_id = caller(request).user_id if "authorization" in request.headers else None
    return JSON(await context(request).social.creator(creator_id, caller_id))


async def my_following(request: Request) -> JSON:
    principal = caller(request)
    limit = query_int(request, "limit", 50, 1, 200)
    cursor = request.query_params.get("cursor")
    if cursor is not None:
        check_id(cursor, "cursor")
    return JSON(await context(request).social.following(principal.user_id, cursor, limit))


async def share(request: Request) -> JSON:
    principal = caller(request, *GIFTING_ROLES)
    room_id = check_id(request.path_params["room_id"], "room_id")
    counted = await context(request).social.share(principal.user_id, room_id, principal.name)
    return JSON({"room_id": room_id, "counted": counted})


routes = [
    Route("/v1/creators/{creator_id}", get_creator, methods=["GET"]),
    Route("/v1/creators/{creator_id}/follow", follow, methods=["PUT"]),
    Route("/v1/creators/{creator_id}/follow", unfollow, methods=["DELETE"]),
    Route("/v1/me/following", my_following, methods=["GET"]),
    Route("/v1/rooms/{room_id}/share", share, methods=["POST"]),
]
