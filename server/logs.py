"""Logging: one configuration for the server's and uvicorn's loggers, as text for a terminal
or as one JSON object per line (``GIFTING_LOG_FORMAT``), with bearer tokens kept out of
every line and the context of the work in progress on each.

A browser can only pass its token to a WebSocket in the URL (``?token=``) or in the
subprotocol list, and uvicorn logs each WebSocket's path and query string (with
``GIFTING_SOCKET_LOG``: ``server.sockets``, ``hub.outlet``); an overlay's
token is in its paths (``/overlay/<token>``). ``RedactTokens`` replaces both in any log
record before it is formatted.

The context is held in context variables, so it follows the task that handles a request
or a socket: ``REQUEST_ID`` (set per HTTP request and per room socket, ``api.request_ids``)
and the fields ``bind`` adds (a gift's sender, room and event id). ``AttachContext`` puts
them on every record; the JSON formatter writes them as fields, the text one appends them
as ``key=value``.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from uvicorn.config import LOGGING_CONFIG

from server.settings import LOG_FORMATS

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_FIELDS: ContextVar[dict[str, str] | None] = ContextVar("log_fields", default=None)

# A bearer token in a query string or a subprotocol, and an overlay token in the overlay's
# paths (``/overlay/<token>``, ``/v1/overlay/<token>`` and its socket), which is the overlay's
# only credential; a creator's own ``/v1/creator/overlay`` routes hold none.
_BEARER_TOKEN = re.compile(r"(token=|bearer\.)[^&\s\"']+", re.IGNORECASE)
_OVERLAY_TOKEN = re.compile(r"((?<!/creator)/overlay/)[^&/?#\s\"']+")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context_suffix)s"


def redact(text: str) -> str:
    return _OVERLAY_TOKEN.sub(r"\1<redacted>", _BEARER_TOKEN.sub(r"\1<redacted>", text))


def bind(**fields: str) -> None:
    """Add ``fields`` to every line logged from here on in the current task."""
    _FIELDS.set({**(_FIELDS.get() or {}), **fields})


def current_context() -> dict[str, str]:
    """The request id and bound fields of the current task."""
    request_id = REQUEST_ID.get()
    fields = _FIELDS.get()
    context = {"request_id": request_id} if request_id is not None else {}
    return {**context, **fields} if fields else context


class Throttled:
    """One logger's line that can repeat many times a second (a retry loop in an outage),
    logged at most once per ``interval_s``; the next line logged says how many were left out."""

    def __init__(
        self, logger: logging.Logger, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._next = -math.inf
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += " (and %d more like it in the last %g s)"
            args = (*args, self._suppressed, self._interval_s)
        self._logger.warning(msg, *args)
        self._next = now + self._interval_s
        self._suppressed = 0


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


class AttachContext(logging.Filter):
    """Puts the current task's context on the record: ``log_context`` (a dict) and
    ``context_suffix`` (`` key=value`` pairs for text lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "log_context"):
            context = current_context()
            record.log_context = context
            record.context_suffix = "".join(f" {key}={value}" for key, value in context.items())
        return True


# Attributes every record has; anything else on a record came through ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
    "log_context",
    "context_suffix",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, then the context
    (``request_id``, bound fields, ``extra=`` fields), the request of an access line, and
    ``exc`` with the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http_version, status = record.args
            entry.update(client=client, method=method, path=path, http_version=http_version, status=status)
        context = getattr(record, "log_context", None)
        entry.update(current_context() if context is None else context)
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES:
                entry.setdefault(key, redact(value) if isinstance(value, str) else value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()


def log_config(log_format: str = "text", socket_log: bool = False) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of a server process, for uvicorn and for the root
    logger: uvicorn's own in text, ``JsonFormatter`` everywhere in json; ``RedactTokens`` and
    ``AttachContext`` on every handler. uvicorn's line per socket handshake
    (``server.sockets``) only with ``socket_log``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    config = copy.deepcopy(LOGGING_CONFIG)
    formatters = config["formatters"]
    if log_format == "json":
        for name in ("default", "access", "plain"):
            formatters[name] = {"()": JsonFormatter}
    else:
        formatters["default"]["fmt"] += "%(context_suffix)s"
        formatters["access"]["fmt"] += "%(context_suffix)s"
        formatters["plain"] = {"format": TEXT_FORMAT}
    config["handlers"]["plain"] = {
        "class": "logging.StreamHandler",
        "formatter": "plain",
        "stream": "ext://sys.stderr",
    }
    config["filters"] = {"redact_tokens": {"()": RedactTokens}, "attach_context": {"()": AttachContext}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact_tokens", "attach_context"]
    config["loggers"]["server.sockets"] = {
        "handlers": ["default"],
        "level": "INFO" if socket_log else "WARNING",
        "propagate": False,
    }
    config["root"] = {"handlers": ["plain"], "level": "INFO"}
    return config
