"""HTTP routes of videos: a creator publishes a video record, anyone reads it and a creator's
list, and a signed-in user sends gifts on it through the one gift path (``gifting.py``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, caller, context, now_ms, query_int, read_json
from server.api.http import gift_answer
from server.auth import GIFTING_ROLES
from server.domain.ids import check_id, new_id
from server.domain.requests import GiftRequest, PublishVideoRequest, parse
from server.gifting import GiftOutcome


async def publish_video(request: Request) -> JSON:
    principal = caller(request, "creator")
    body = parse(await read_json(request), PublishVideoRequest)
    video = await context(request).store.videos.create(
        principal.user_id, new_id("v"), body.title, body.url, now_ms()
    )
    return JSON(video.to_dict(), status_code=201)


async def get_video(request: Request) -> JSON:
    """Public, like a room's state: the page of a video reads it before any sign-in."""
    video_id = check_id(request.path_params["video_id"], "video_id")
    return JSON((await context(request).store.videos.get(video_id)).to_dict())


async def creator_videos(request: Request) -> JSON:
    """Public, like a creator's profile."""
    creator_id = check_id(request.path_params["creator_id"], "creator_id")
    limit = query_int(request, "limit", 50, 1, 200)
    videos = await context(request).store.videos.of_creator(creator_id, limit)
    return JSON({"videos": [video.to_dict() for video in videos]})


async def send_video_gift(request: Request) -> JSON:
    return await gift_answer(request, video_gift_from(request))


async def video_gift_from(request: Request) -> GiftOutcome:
    principal = caller(request, *GIFTING_ROLES)
    video_id = check_id(request.path_params["video_id"], "video_id")
    body = parse(await read_json(request), GiftRequest)
    return await context(request).gifts.send_to_video(
        principal.user_id, video_id, body, now_ms(), sender_name=principal.name
    )


VIDEO_GIFT_ROUTE = Route("/v1/videos/{video_id}/gifts", send_video_gift, methods=["POST"])

routes = [
    Route("/v1/videos", publish_video, methods=["POST"]),
    Route("/v1/videos/{video_id}", get_video),
    Route("/v1/creators/{creator_id}/videos", creator_videos),
    VIDEO_GIFT_ROUTE,
]
