"""The browser clients in ``client_demo/``: the viewer page, the creator dashboard and the
streamer overlay, served as plain files (no build step)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

PAGES = {"/": "index.html", "/creator": "creator.html", "/overlay/{token}": "overlay.html"}


def routes(client_dir: Path | None) -> list[BaseRoute]:
    """The page routes and ``/static``, or none when the clients are not installed."""
    if client_dir is None:
        return []
    pages: list[BaseRoute] = [Route(path, file_page(client_dir / name)) for path, name in PAGES.items()]
    return [*pages, Mount("/static", app=StaticFiles(directory=client_dir), name="static")]


def file_page(path: Path) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        # Pages are small and change with the server: let browsers revalidate them.
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    return serve
