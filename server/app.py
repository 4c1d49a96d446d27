"""``create_app(settings, engine_url)``: the Starlette app, its routes, error handling and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from server import metrics
from server.api import (
    admin,
    apple,
    chat,
    creator,
    dev,
    google,
    http,
    openapi,
    pages,
    payments,
    social,
    videos,
    ws,
)
from server.api import battles as battles_api
from server.api import likes as likes_api
from server.api import moderation as moderation_api
from server.api import stripe as stripe_api
from server.api.answers import client_error
from server.api.context import JSON, Context, now_ms
from server.api.deadline import EngineBudget
from server.api.limits import ClientLimiter, RequestLimits
from server.api.request_ids import RequestIds
from server.auth import Verifier
from server.battles import BattleService
from server.chat import ChatService
from server.clawbacks import Clawbacks
from server.demo import seed_demo
from server.domain.catalog import Catalog
from server.domain.limits import retry_after_s
from server.engine import EngineSupervisor
from server.errors import EngineUnavailable, GiftingError, MethodNotAllowed, NotFound, RateLimited
from server.gifting import GiftService
from server.hub.hub import Hub
from server.keys import KeySchema
from server.oidc import KeyRefresh, KeySet
from server.providers import app_store, google_play, stripe_checkout
from server.purchases import Checkout, Purchases, SandboxCheckout
from server.settings import Settings
from server.social import SocialService
from server.store import UNAVAILABLE, Store

log = logging.getLogger(__name__)

# How long an outbox entry may wait for the inline credit before the sweeper applies it.
OUTBOX_GRACE_MS = 1_000
# At shutdown, a background loop still running this long after its cancellation is cancelled
# again (see stop_tasks).
CANCEL_AGAIN_S = 0.5
# The collector's thresholds: a young pass after 10,000 net allocations (Python's default is
# 700), a middle pass every 50 young ones (10) and a full pass considered after 100 middle ones
# (10). A full pass pauses every connection, for longer the more there are (442 ms at 10,000);
# with the defaults a process taking on connections ran one each time its heap had grown by a
# quarter, 11 of them over 10,000 handshakes. A closed socket leaves no cycle for the passes to
# free (tests/test_freed_sockets.py); the young passes free the short-lived ones, such as an
# exception and its traceback.
GC_THRESHOLDS = (10_000, 50, 100)


def create_app(settings: Settings, engine_url: str, engine: EngineSupervisor | None = None) -> ASGIApp:
    """The server's ASGI app: room sockets (``api.ws``) in front of request ids
    (``api.request_ids``), the per-address request limit (``api.limits``) and the Starlette app.
    ``engine``: the supervisor of the embedded engine, when this process runs it (``/healthz``)."""
    routes: list[BaseRoute] = [
        *http.routes,
        *creator.routes,
        *chat.routes,
        *moderation_api.routes,
        *admin.routes,
        *payments.routes,
        *apple.routes,
        *google.routes,
        *stripe_api.routes,
        *likes_api.routes,
        *social.routes,
        *battles_api.routes,
        *videos.routes,
        *pages.routes(
            settings.client_dir,
            settings.stripe_js_url if settings.stripe_enabled else None,
            settings.stripe_api_base if settings.stripe_enabled else None,
        ),
    ]
    if settings.demo:
        routes += [*dev.routes, *payments.sandbox_routes]
    if settings.metrics:
        routes.append(http.metrics_route(settings.metrics_allow))
    routes.append(openapi.route(routes))
    keys = KeySet.from_settings(settings)
    tokens = Verifier(settings.jwt_secret, keys, hs256=settings.hs256_tokens)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store.from_url(
            engine_url,
            KeySchema(settings.key_prefix),
            settings.room_stream_len,
            replica_acks=settings.replica_acks,
            replica_timeout_ms=settings.replica_timeout_ms,
            timeout_ms=settings.engine_timeout_ms,
        )
        catalog = Catalog.load_default()
        gifts = GiftService(store, catalog, settings)
        hub = Hub(store, catalog, settings)
        battles = BattleService(store, gifts.name_of, functools.partial(gifts.sweep, by_debit=True))
        clawbacks = Clawbacks(store, settings.clawback_window_ms)
        web = checkouts(settings)
        app.state.ctx = sockets.context = Context(
            settings=settings,
            store=store,
            catalog=catalog,
            gifts=gifts,
            hub=hub,
            clawbacks=clawbacks,
            purchases=Purchases(store, settings, clawbacks, web),
            chat=ChatService(store, settings, gifts.name_of),
            social=SocialService(store, gifts.name_of),
            battles=battles,
            engine=engine,
            apple=app_store(settings, catalog),
            google=google_play(settings, catalog),
            tokens=tokens,
        )
        sockets.limiter = limits.limiter = ClientLimiter(store, settings)
        await store.catalog.apply_to(catalog)
        await warn_of_missing_replicas(store)
        if settings.demo:
            log.warning(
                "demo mode: anyone can mint a token for any user and role (POST /v1/dev/token) "
                "and pay orders in the sandbox; never expose a demo server to the internet"
            )
            await seed_demo(store)
        # What exists now (modules, the app, the catalog) lives as long as the process.
        # Freezing it keeps the collector's full passes, which pause every connection, from
        # scanning it again each time. Nothing is frozen later: the collector never frees a
        # frozen cycle.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        tasks = [
            asyncio.create_task(sweep_outbox_forever(gifts, clawbacks, settings.outbox_sweep_s)),
            asyncio.create_task(follow_catalog_forever(store, catalog)),
            asyncio.create_task(hub.run()),
            asyncio.create_task(battles.run()),
        ]
        try:
            if keys is not None:
                # The first fetch is awaited: tokens are accepted as soon as the server answers.
                # Inside the try: were it to fail, the loops above must still be stopped, or the
                # process would never exit.
                await keys.refresh("start-up")
                tasks.append(asyncio.create_task(keys.run()))
            yield
        finally:
            await stop_tasks(tasks)
            with contextlib.suppress(Exception):
                await gifts.flush_clears()  # what the sweeper would otherwise redo
            with contextlib.suppress(Exception):
                await hub.release_slots()  # else they count until they expire
            await store.close()
            metrics.process_exiting()
            if keys is not None:
                await keys.close()
            sandbox = getattr(app.state, "sandbox_client", None)
            if sandbox is not None:
                await sandbox.aclose()
            for checkout in web.values():
                await checkout.close()
            if app.state.ctx.google is not None:
                await app.state.ctx.google.close()

    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            GiftingError: gifting_error,
            HTTPException: http_error,
            **dict.fromkeys(UNAVAILABLE, unexpected_error),
            Exception: unexpected_error,
        },
    )
    limits = RequestLimits(starlette if keys is None else KeyRefresh(starlette, tokens))
    sockets = ws.RoomSockets(RequestIds(EngineBudget(limits, settings.engine_timeout_ms / 1000)))
    return sockets


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the background loops and wait until each has ended.

    A cancellation can be lost on Python 3.11 when it races an inner ``asyncio.wait_for``
    that is finishing at that moment (the engine client wraps socket writes in one), and the
    loop then goes on running; so whatever still runs is cancelled again until it ends.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())


def checkouts(settings: Settings) -> dict[str, Checkout]:
    """The web payment providers this server is configured for, by name."""
    configured: dict[str, Checkout] = {}
    if settings.webhook_secret:
        configured["sandbox"] = SandboxCheckout()
    stripe = stripe_checkout(settings)
    if stripe is not None:
        configured["stripe"] = stripe
    return configured


async def sweep_outbox_forever(gifts: GiftService, clawbacks: Clawbacks, interval_s: float) -> None:
    """Finish gift deliveries and clawback reversals whose inline step did not run (a crash,
    an engine hiccup)."""
    while True:
        try:
            credited = await gifts.sweep(older_than_ms=now_ms() - OUTBOX_GRACE_MS)
            if credited:
                log.warning("outbox sweep credited %d deferred gift(s)", credited)
            reversed_ = await clawbacks.sweep(now_ms())
            if reversed_:
                log.warning("reversal sweep took back %d diamonds after a clawback", reversed_)
        except UNAVAILABLE as exc:
            metrics.engine_error(exc)
            log.warning("outbox sweep skipped: engine unavailable (%s)", exc)
        await asyncio.sleep(interval_s)


async def warn_of_missing_replicas(store: Store) -> None:
    short = await store.replication.short_of_replicas()
    for master, connected in sorted(short.items()):
        log.warning(
            "GIFTING_REPLICA_ACKS=%d but master %s has %d replica(s) connected: money writes in "
            "its slots will answer 503 engine_unavailable until it has enough",
            store.replication.replicas,
            master,
            connected,
        )


async def follow_catalog_forever(store: Store, catalog: Catalog, interval_s: float = 1.0) -> None:
    """Apply catalog changes made through any process within about a second."""
    seen = -1
    while True:
        try:
            version = await store.catalog.version()
            if version != seen:
                await store.catalog.apply_to(catalog)
                seen = version
        except UNAVAILABLE as exc:
            metrics.engine_error(exc)
            log.warning("catalog refresh skipped: engine unavailable (%s)", exc)
        await asyncio.sleep(interval_s)


async def gifting_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GiftingError)
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(retry_after_s(exc.retry_after_ms))}
    elif isinstance(exc, EngineUnavailable):
        headers = {"Retry-After": "1"}
    return JSON(exc.to_dict(), status_code=exc.status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error: GiftingError = NotFound(f"no route {request.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    else:
        error = GiftingError(str(exc.detail), code="bad_request")
        error.status = exc.status_code  # type: ignore[misc]
    return JSON(error.to_dict(), status_code=error.status, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """An engine outage (503, retry) or a bug (500, logged with its traceback), answered in
    the usual error shape (``api.answers.client_error``)."""
    return await gifting_error(request, client_error(exc, f"{request.method} {request.url.path}"))
