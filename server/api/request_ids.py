"""Request ids: every HTTP request and room socket gets one, and every line logged while
handling it carries it (``logs.REQUEST_ID``).

The id is the request's ``X-Request-ID`` when that is a safe short token (so that a proxy's
or a client's id can be followed through), else a new random one. HTTP responses echo it in
``X-Request-ID``.
"""

from __future__ import annotations

import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.logs import REQUEST_ID

HEADER = b"x-request-id"
_SAFE = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def request_id(scope: Scope) -> str:
    """The request's own ``X-Request-ID`` if it is 1-64 letters, digits and ``._:-``, else a new one."""
    for name, value in scope["headers"]:
        if name == HEADER:
            if _SAFE.fullmatch(value):
                return str(value.decode("ascii"))
            break
    return secrets.token_hex(8)


def adopt(scope: Scope) -> str:
    """Give the current task the request's id (for a room socket, for as long as it is open)."""
    rid = request_id(scope)
    REQUEST_ID.set(rid)
    return rid


class RequestIds:
    """ASGI middleware: each HTTP request runs with its id set, and answers with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        mark = REQUEST_ID.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(mark)
