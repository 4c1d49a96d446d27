"""The engine budget of an HTTP request: its engine calls together wait at most
``GIFTING_ENGINE_TIMEOUT_MS`` (``store.connection.engine_budget``), so a stalled engine
costs a client that long at most before ``503 engine_unavailable``. A room socket's frames
each get their own budget (``api.ws``)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from server.store.connection import engine_budget


class EngineBudget:
    """ASGI middleware: each HTTP request's engine calls share one budget."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with engine_budget(self.timeout_s):
            await self.app(scope, receive, send)
