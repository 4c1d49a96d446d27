"""Several server processes on one port (``gifting-server --workers N``), each a full hub member.

uvicorn's supervisor binds the port once, starts N worker processes that all accept on it,
and starts a new worker when one dies. A worker is a fresh interpreter that builds its app
with ``app()`` from the environment it inherits, so the parent hands the engine's URL down
in ``GIFTING_REDIS_URL``: an embedded engine is started once, by the parent, and shared by
every worker. The parent alone supervises that engine (``engine.EngineSupervisor``): it
restarts it on the same socket, which the workers reconnect to, or, if it cannot, stops the
workers and exits 1. The workers cooperate through the engine like servers on separate
machines.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import logging.config
import multiprocessing
import os
import signal
import sys
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from server.api.heads import BoundedHeadProtocol
from server.app import create_app
from server.engine import EngineSupervisor
from server.hub.outlet import GRACEFUL_SHUTDOWN_S, GiftingWebSocketProtocol
from server.logs import log_config
from server.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def configure_logging(settings: Settings) -> None:
    """The loggers of every server process (``server.logs``): INFO and up, as text or JSON
    lines, bearer tokens redacted."""
    logging.config.dictConfig(log_config(settings.log_format, settings.socket_log))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every server process runs with, one process or many (the app and the WebSocket
    protocol class aside)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "loop": "auto",
        "lifespan": "on",
        "log_level": "info",
        "log_config": log_config(settings.log_format, settings.socket_log),
        "server_header": False,
        "backlog": settings.listen_backlog,
        "timeout_keep_alive": settings.keep_alive_s,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "ws_max_size": settings.ws_max_frame_bytes,
        "ws_ping_interval": settings.ws_ping_s,
        "ws_ping_timeout": settings.ws_ping_s,
        # Frames are built once and written to every connection as the same bytes.
        "ws_per_message_deflate": False,
    }


def serve_workers(settings: Settings, engine_url: str, engine: EngineSupervisor | None = None) -> int:
    """Serve with ``settings.workers`` processes on the engine at ``engine_url`` until the
    parent is stopped (SIGTERM or SIGINT), or the supervisor of its embedded engine, which
    runs here, gives up; and every worker has finished. The exit code: 0, or uvicorn's
    startup failure (3) when a worker could not start, which stops them all."""
    os.environ["GIFTING_REDIS_URL"] = engine_url
    config = uvicorn.Config(
        f"{__name__}:app",
        factory=True,
        # The classes themselves (a worker imports them by name); ``app()`` sets their limits.
        ws=GiftingWebSocketProtocol,
        http=BoundedHeadProtocol,
        **uvicorn_options(settings),
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    if engine is not None:
        engine.when_given_up(supervisor.should_exit.set)
    supervisor.run()
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return STARTUP_FAILURE if failed else 0


def app() -> ASGIApp:
    """In a worker process (uvicorn calls this): the app, from the settings the parent read."""
    _exit_with_parent()
    try:
        settings = Settings.from_env()
    except SettingsError as exc:  # the parent checked the same environment: not expected
        log.error("%s", exc)
        sys.exit(STARTUP_FAILURE)
    configure_logging(settings)
    if settings.redis_url is None:
        log.error("a worker needs GIFTING_REDIS_URL; start workers with gifting-server --workers N")
        sys.exit(STARTUP_FAILURE)
    # What ``with_limits`` does for one process; a worker has its own copy of the class.
    GiftingWebSocketProtocol.buffer_limit = settings.ws_buffer_bytes
    GiftingWebSocketProtocol.reconnect_rate = settings.reconnect_rate
    BoundedHeadProtocol.max_bytes = settings.max_header_bytes
    BoundedHeadProtocol.max_count = settings.max_headers
    BoundedHeadProtocol.timeout_s = settings.header_timeout_s
    return create_app(settings, settings.redis_url)


def _exit_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the parent dies, even by SIGKILL, so no worker
    outlives it; the parent stops its workers itself on SIGTERM and SIGINT."""
    parent = multiprocessing.parent_process()
    if not sys.platform.startswith("linux") or parent is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent.pid:  # the parent died before the request took effect
        sys.exit(0)
