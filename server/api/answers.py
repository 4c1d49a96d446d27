"""What a client is answered when a request fails, and a gift's outcome, decided once for
HTTP and the room socket.

``client_error`` classifies any exception: a ``GiftingError`` is answered as itself, an
engine outage (``store.failures.is_outage``) as 503 ``engine_unavailable`` (retry shortly),
anything else, a script's runtime error included, as 500 ``internal_error``, logged with its
traceback. ``answer_gift`` runs one gift through it and counts the outcome in
``metrics.GIFTS`` under its transport: ``POST /v1/rooms/{id}/gifts`` and the room socket's
``gift`` frame only render what it returns or raises. ``answer_chat`` does the same for a chat
message (``metrics.CHAT_MESSAGES``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from server import metrics
from server.chat import ChatOutcome
from server.errors import EngineUnavailable, GiftingError, InternalError
from server.gifting import GiftOutcome
from server.store.failures import is_outage

log = logging.getLogger(__name__)


def client_error(exc: Exception, where: str) -> GiftingError:
    """The error a client is answered with for ``exc``, raised while serving ``where``."""
    if isinstance(exc, GiftingError):
        return exc
    metrics.engine_error(exc)
    if is_outage(exc):
        log.warning("engine unavailable on %s: %s", where, exc)
        return EngineUnavailable("the engine is unavailable; retry shortly")
    log.error("unhandled error on %s", where, exc_info=exc)
    return InternalError("an unexpected error occurred")


async def answer_gift(transport: str, attempt: Awaitable[GiftOutcome], where: str) -> GiftOutcome:
    """The outcome of one gift ``attempt`` (everything from reading the request to the debit),
    counted once; a failure is raised as the error the client is answered with."""
    try:
        outcome = await attempt
    except Exception as exc:
        error = client_error(exc, where)
        metrics.gift_refused(transport, error.code)
        if error is exc:
            raise
        raise error from exc
    metrics.gift_answered(transport, outcome.replayed)
    return outcome


async def answer_chat(transport: str, attempt: Awaitable[ChatOutcome], where: str) -> ChatOutcome:
    """The outcome of one chat message ``attempt``, counted once in ``metrics.CHAT_MESSAGES``;
    a failure is raised as the error the client is answered with."""
    try:
        outcome = await attempt
    except Exception as exc:
        error = client_error(exc, where)
        metrics.CHAT_MESSAGES.labels(transport, error.code).inc()
        if error is exc:
            raise
        raise error from exc
    metrics.CHAT_MESSAGES.labels(transport, "replayed" if outcome.replayed else "posted").inc()
    return outcome
