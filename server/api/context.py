"""What every handler needs, built once at start-up and reached through ``context(request)``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from server.auth import Principal, Verifier
from server.battles import BattleService
from server.chat import ChatService
from server.clawbacks import Clawbacks
from server.domain.catalog import Catalog
from server.engine import EngineSupervisor
from server.errors import InvalidRequest, PayloadTooLarge
from server.gifting import GiftService
from server.hub.hub import Hub
from server.purchases import Purchases
from server.settings import Settings
from server.social import SocialService
from server.store import Store

if TYPE_CHECKING:  # imported only when configured (server.providers)
    from server.providers.apple_client import AppleStore
    from server.providers.google_client import GooglePlay


@dataclass
class Context:
    settings: Settings
    store: Store
    catalog: Catalog
    gifts: GiftService
    hub: Hub
    clawbacks: Clawbacks
    purchases: Purchases
    chat: ChatService
    social: SocialService
    battles: BattleService
    # Checks bearer tokens, with the OpenID Connect provider's keys when its sign-in is configured.
    tokens: Verifier
    # The embedded engine's supervisor, in the process that runs it (one process serving).
    engine: EngineSupervisor | None = None
    # The App Store, if configured (GIFTING_APPLE_*).
    apple: AppleStore | None = None
    # Google Play, if configured (GIFTING_GOOGLE_*).
    google: GooglePlay | None = None


def context(conn: HTTPConnection) -> Context:
    ctx: Context = conn.app.state.ctx
    return ctx


def caller(request: Request, *roles: str) -> Principal:
    """The authenticated caller, optionally required to hold one of ``roles``."""
    principal = context(request).tokens.header(request.headers.get("authorization"))
    return principal.require(*roles) if roles else principal


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class JSON(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past ``max_body_bytes`` without reading the rest."""
    limit = context(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    return bytes(body)


def decode_json(body: bytes) -> object:
    if not body:
        raise InvalidRequest("the body is empty; a JSON object is expected")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None


async def read_json(request: Request, *, optional: bool = False) -> object:
    """The body as JSON. With ``optional`` (a body whose every field has a default), an empty
    body reads as ``{}``, whatever its Content-Type."""
    body = await read_body(request)
    if optional and not body.strip():
        return {}
    return decode_json(body)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidRequest(f"query parameter {name} must be an integer from {low} to {high}")
    return int(raw)
