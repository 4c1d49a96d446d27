"""``python -m server`` / ``gifting-server``: read settings, start the embedded engine if needed, serve.

``--workers N`` (or ``GIFTING_WORKERS``) serves with N processes on one port (``server.workers``).

``gifting-server audit`` instead replays every ledger and checks that the books balance
(``server.audit``): exit 0 when they do, 1 when not, 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import replace

import orjson
import redis
import uvicorn
from redis.asyncio import Redis
from redis.exceptions import RedisError
from uvicorn.config import STARTUP_FAILURE

from server.api.heads import BoundedHeadProtocol
from server.app import create_app
from server.audit import AuditResult, EngineReplyError, audit_books
from server.engine import EmbeddedEngine, EngineError, EngineSupervisor
from server.hub.outlet import GiftingWebSocketProtocol
from server.keys import KeySchema
from server.settings import Settings, SettingsError, cluster_nodes, secret_problem
from server.store.store import connect_cluster
from server.workers import configure_logging, serve_workers, uvicorn_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gifting-server",
        description="Run the gifting server. Settings come from GIFTING_* environment variables; "
        "with no GIFTING_REDIS_URL it starts its own engine with data in GIFTING_DATA_DIR.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "audit"],
        help="what to do (default: serve); audit: replay every ledger and check the books "
        "(exit 0 when they balance, 1 when not, 2 when it cannot run)",
    )
    parser.add_argument(
        "--workers",
        type=_worker_count,
        metavar="N",
        help="serve: N processes sharing the port, each a member of the same hub "
        "(default: GIFTING_WORKERS, else 1); a worker that dies is replaced",
    )
    parser.add_argument("--json", action="store_true", help="audit: print the result as JSON")
    args = parser.parse_args(argv)
    if args.command == "audit":
        return audit(os.environ, as_json=args.json)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"gifting-server: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    if args.workers is not None:
        settings = replace(settings, workers=args.workers)
    return serve(settings)


def _worker_count(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 1024:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1024, got {raw!r}")
    return int(raw)


def serve(settings: Settings) -> int:
    """Serve until stopped: 0; 1 if the embedded engine could not be started or brought back."""
    supervisor: EngineSupervisor | None = None
    url = settings.redis_url
    if url is None:
        try:
            engine = EmbeddedEngine(settings.data_dir, settings.fsync).start()
        except EngineError as exc:
            print(f"gifting-server: {exc}", file=sys.stderr)
            return 1
        url = engine.url
        logging.getLogger("server").info(
            "embedded engine at %s (data in %s, appendfsync %s)",
            url,
            engine.data_dir,
            settings.fsync,
        )
        supervisor = EngineSupervisor(engine).start()
    try:
        if settings.workers > 1:
            # Every worker connects to this engine, which this process alone supervises.
            code = serve_workers(settings, url, supervisor)
        else:
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, url, supervisor),
                    ws=GiftingWebSocketProtocol.with_limits(
                        settings.ws_buffer_bytes, settings.reconnect_rate
                    ),
                    http=BoundedHeadProtocol.with_limits(
                        settings.max_header_bytes, settings.max_headers, settings.header_timeout_s
                    ),
                    **uvicorn_options(settings),
                )
            )
            if supervisor is not None:
                supervisor.when_given_up(lambda: setattr(server, "should_exit", True))
            with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it handled
                server.run()
            code = 0 if server.started else STARTUP_FAILURE
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 1 if supervisor is not None and supervisor.gave_up.is_set() else code


# The audit signs and checks no token or webhook, so it must run without the secrets; they
# are filled with this throwaway one only so that every other setting is validated as usual.
_NO_SECRET = secrets.token_urlsafe(48)


def audit(env: Mapping[str, str], *, as_json: bool = False) -> int:
    """Audit the books of the engine the server would use with ``env``; the exit code."""
    env = dict(env)
    for name in ("GIFTING_JWT_SECRET", "GIFTING_WEBHOOK_SECRET"):
        if secret_problem(env.get(name, "")) is not None:
            env[name] = _NO_SECRET
    try:
        settings = Settings.from_env(env)
        url, engine = audit_engine(settings)
    except (SettingsError, EngineError) as exc:
        print(f"gifting-server audit: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_audit(url, settings))
    except (RedisError, EngineReplyError, OSError) as exc:
        print(f"gifting-server audit: cannot read the engine at {url}: {exc}", file=sys.stderr)
        return 2
    finally:
        if engine is not None:
            engine.stop()
    if as_json:
        print(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(result.report())
    return 0 if result.ok else 1


async def _audit(url: str, settings: Settings) -> AuditResult:
    nodes = cluster_nodes(url)
    client = (
        Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        if nodes is None
        else connect_cluster(nodes)
    )
    async with client:
        await client.ping()
        return await audit_books(
            client,
            KeySchema(settings.key_prefix),
            settings.creator_share,
            clawback_window_ms=settings.clawback_window_ms,
        )


def audit_engine(settings: Settings) -> tuple[str, EmbeddedEngine | None]:
    """The engine to audit: ``GIFTING_REDIS_URL``; else the embedded engine of the data dir,
    through its socket if a server is running on it, or started here for the audit (and
    stopped after it) if none is: two engines must never share one append-only file."""
    if settings.redis_url is not None:
        return settings.redis_url, None
    if not settings.data_dir.is_dir():
        raise EngineError(f"no data dir {settings.data_dir}: set GIFTING_DATA_DIR or GIFTING_REDIS_URL")
    engine = EmbeddedEngine(settings.data_dir, settings.fsync)
    if engine.socket_path.exists():
        try:
            with redis.Redis(unix_socket_path=str(engine.socket_path), socket_timeout=1) as probe:
                probe.ping()
            return f"unix://{engine.socket_path}", None
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # a stale socket: the engine started below removes it
    # Loading a large append-only file takes a while before the engine answers.
    return engine.start(timeout_s=600).url, engine


if __name__ == "__main__":
    sys.exit(main())
