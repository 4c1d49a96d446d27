"""``python -m server`` / ``gifting-server``: read settings, start the embedded engine if needed, serve."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from server.app import create_app
from server.engine import EmbeddedEngine, EngineError
from server.hub.outlet import GiftingWebSocketProtocol
from server.logs import RedactTokens, log_config
from server.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gifting-server",
        description="Run the gifting server. Settings come from GIFTING_* environment variables; "
        "with no GIFTING_REDIS_URL it starts its own engine with data in GIFTING_DATA_DIR.",
    )
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve"], help="what to do (default: serve)"
    )
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"gifting-server: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def serve(settings: Settings) -> int:
    engine: EmbeddedEngine | None = None
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
    try:
        uvicorn.run(
            create_app(settings, url),
            host=settings.host,
            port=settings.port,
            loop="auto",
            lifespan="on",
            log_level="info",
            log_config=log_config(),
            server_header=False,
            timeout_graceful_shutdown=5,
            ws=GiftingWebSocketProtocol.with_buffer_limit(settings.ws_buffer_bytes),
            ws_max_size=settings.ws_max_frame_bytes,
            ws_ping_interval=settings.ws_ping_s,
            ws_ping_timeout=settings.ws_ping_s,
            # Frames are built once and written to every connection as the same bytes.
            ws_per_message_deflate=False,
        )
    finally:
        if engine is not None:
            engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
