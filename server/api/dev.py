"""Demo-only routes: mint a token for any user, so the demo needs no identity provider."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, context, read_json
from server.auth import issue_token
from server.domain.requests import DevTokenRequest, parse


async def dev_token(request: Request) -> JSON:
    body = parse(await read_json(request), DevTokenRequest)
    ctx = context(request)
    name = body.name or body.user_id.capitalize()
    if body.name or await ctx.store.profile_name(body.user_id) is None:
        await ctx.store.set_profile(body.user_id, name, body.role)
    token = issue_token(ctx.settings.jwt_secret, body.user_id, body.role, name=name)
    return JSON({"token": token, "user_id": body.user_id, "role": body.role})


routes = [Route("/v1/dev/token", dev_token, methods=["POST"])]
