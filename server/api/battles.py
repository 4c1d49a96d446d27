"""HTTP routes of LIVE battles: invite, accept, decline, read one, and the caller's own
(``server.battles``); ending a live forfeits its battle (``api.http`` ``end_room``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from server.api.context import JSON, caller, context, read_json
from server.auth import CREATOR_ROLES
from server.battles import INVITATION_MS
from server.domain.ids import check_id
from server.domain.requests import BattleRequest, parse


async def invite(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    body = parse(await read_json(request), BattleRequest)
    battle = await context(request).battles.invite(principal.user_id, body.opponent_id, body.duration_s)
    return JSON(battle.to_dict(INVITATION_MS), status_code=201)


async def accept(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    battle_id = check_id(request.path_params["battle_id"], "battle_id")
    battle = await context(request).battles.accept(battle_id, principal.user_id)
    return JSON(battle.to_dict(INVITATION_MS))


async def decline(request: Request) -> JSON:
    principal = caller(request, *CREATOR_ROLES)
    battle_id = check_id(request.path_params["battle_id"], "battle_id")
    battle = await context(request).battles.decline(battle_id, principal.user_id)
    return JSON(battle.to_dict(INVITATION_MS))


async def get_battle(request: Request) -> JSON:
    caller(request)
    battle_id = check_id(request.path_params["battle_id"], "battle_id")
    battle = await context(request).battles.get(battle_id)
    return JSON(battle.to_dict(INVITATION_MS))


async def my_battle(request: Request) -> JSON:
    principal = caller(request)
    battle = await context(request).battles.current(principal.user_id)
    return JSON({"battle": None if battle is None else battle.to_dict(INVITATION_MS)})


routes = [
    Route("/v1/battles", invite, methods=["POST"]),
    Route("/v1/battles/{battle_id}", get_battle, methods=["GET"]),
    Route("/v1/battles/{battle_id}/accept", accept, methods=["POST"]),
    Route("/v1/battles/{battle_id}/decline", decline, methods=["POST"]),
    Route("/v1/me/battle", my_battle, methods=["GET"]),
]
