"""The per-address request limit: each HTTP request and each room socket handshake takes a
token from its client address's bucket in the engine (``ip_bucket.lua``), so the limit holds
across every process sharing the engine.

``RequestLimits`` applies it to HTTP as a plain ASGI middleware in front of the Starlette
app: a refused request gets 429 ``rate_limited`` with ``Retry-After`` and reaches no route.
The room socket's admission (``api.ws``) asks the same ``ClientLimiter`` before it accepts.
Health probes, metrics scrapes, static files and the signed payment webhook are not counted
(``domain.limits.is_exempt``).

The client address is the ASGI ``client``: uvicorn replaces it with the ``X-Forwarded-For``
address only for a connection from a trusted proxy (``FORWARDED_ALLOW_IPS``, by default the
loopback addresses), so a client cannot pick the bucket it counts against.

The limit fails open: while the engine cannot be reached, requests go on unlimited (logged
once per outage), and each route answers as it would without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable

from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from server import metrics
from server.api.context import JSON
from server.api.http import GIFT_ROUTE
from server.api.videos import VIDEO_GIFT_ROUTE
from server.domain.limits import client_address, is_exempt, retry_after_s
from server.errors import RateLimited
from server.settings import Settings
from server.store import ENGINE_ERRORS, Store

log = logging.getLogger(__name__)

# After the engine failed to answer, how long requests skip the limit before it is tried
# again, so that an outage does not add a failed engine call to every request.
RETRY_ENGINE_S = 1.0


async def _nothing() -> None:
    return None


class ClientLimiter:
    """Takes one request token per call from the client address's bucket."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.rate_per_s = settings.ip_rate_per_s
        self.burst = settings.ip_burst
        self._engine_down = False
        self._skip_until = 0.0

    async def check(self, scope: Scope) -> RateLimited | None:
        """The refusal if the connection's address is over its rate, else None (the token
        is taken). None too when the limit is off, there is no address, or the engine is down."""
        return await self.take(scope)

    def take(self, scope: Scope) -> Awaitable[RateLimited | None]:
        """``check``, with the engine call queued at once rather than when awaited: the room
        socket's handshake queues its connection slot beside it, one round trip for both."""
        if self.rate_per_s <= 0:
            return _nothing()
        address = client_address(scope.get("client"))
        if address is None or time.monotonic() < self._skip_until:
            return _nothing()
        return self._settle(self.store.limits.take_request(address, self.rate_per_s, self.burst))

    async def _settle(self, taken: Awaitable[int]) -> RateLimited | None:
        try:
            await taken
        except RateLimited as refused:
            return refused
        except ENGINE_ERRORS as exc:
            metrics.engine_error(exc)
            if not self._engine_down:
                log.warning("per-address request limit off: engine unavailable (%r)", exc)
            self._engine_down = True
            self._skip_until = time.monotonic() + RETRY_ENGINE_S
            return None
        if self._engine_down:
            log.warning("per-address request limit on again: engine reachable")
            self._engine_down = False
        return None


class RequestLimits:
    """ASGI middleware: HTTP requests over their address's rate get 429 ``rate_limited``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Set by the app's lifespan once the store exists; until then nothing is counted.
        self.limiter: ClientLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.limiter is not None and not is_exempt(scope["path"]):
            refused = await self.limiter.check(scope)
            if refused is not None:
                if any(route.matches(scope)[0] is Match.FULL for route in (GIFT_ROUTE, VIDEO_GIFT_ROUTE)):
                    metrics.GIFT_ANSWERS.refused(metrics.HTTP, refused.code)  # a gift refused like any other
                await too_many_requests(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def too_many_requests(refused: RateLimited) -> JSON:
    """The 429 answer: the usual error body, and ``Retry-After`` in whole seconds."""
    headers = {"Retry-After": str(retry_after_s(refused.retry_after_ms))}
    return JSON(refused.to_dict(), status_code=refused.status, headers=headers)
