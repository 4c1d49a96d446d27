"""What a client is answered when a request fails, and the outcome of a gift or a chat
message, decided once for HTTP and the room socket.

``client_error`` classifies any exception: a ``GiftingError`` is answered as itself, an
engine outage (``store.failures.is_outage``) as 503 ``engine_unavailable`` (retry shortly), a
client that left while its body was read as 499 ``client_closed`` (answered to no one),
anything else, a script's runtime error included, as 500 ``internal_error``, logged with its
traceback. ``answer`` runs one gift or chat message through it and counts the outcome under
its transport (``metrics.GIFT_ANSWERS``, ``metrics.CHAT_ANSWERS``): ``POST
/v1/rooms/{id}/gifts``, ``POST /v1/rooms/{id}/chat`` and the room socket's ``gift`` and
``chat`` frames only render what it returns or raises.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from starlette.requests import ClientDisconnect

from server import metrics
from server.errors import ClientClosed, EngineUnavailable, GiftingError, InternalError
from server.store.failures import is_outage

log = logging.getLogger(__name__)


def client_error(exc: Exception, where: str) -> GiftingError:
    """The error a client is answered with for ``exc``, raised while serving ``where``."""
    if isinstance(exc, GiftingError):
        return exc
    if isinstance(exc, ClientDisconnect):
        log.info("the client closed the connection during %s", where)
        return ClientClosed("the client closed the connection before its request arrived whole")
    metrics.engine_error(exc)
    if is_outage(exc):
        log.warning("engine unavailable on %s: %s", where, exc)
        return EngineUnavailable("the engine is unavailable; retry shortly")
    log.error("unhandled error on %s", where, exc_info=exc)
    return InternalError("an unexpected error occurred")


class Answer(Protocol):
    @property
    def replayed(self) -> bool: ...


A = TypeVar("A", bound=Answer)


async def answer(transport: str, attempt: Awaitable[A], where: str, answers: metrics.Answers) -> A:
    """The outcome of one ``attempt`` (a gift or a chat message, everything from reading the
    request to the engine's answer), counted once in ``answers``; a failure is raised as the
    error the client is answered with."""
    try:
        outcome = await attempt
    except Exception as exc:
        error = client_error(exc, where)
        answers.refused(transport, error.code)
        if error is exc:
            raise
        raise error from exc
    answers.answered(transport, outcome.replayed)
    return outcome
