"""The browser clients in ``client_demo/``: the viewer page, the creator dashboard, the
streamer overlay and the page of a video, served as plain files (no build step), with the
browser's security headers.

The pages load only their own files (no inline script or style: the scripts set styles
through the CSSOM, which a policy does not restrict) and talk only to this server; with
Stripe on, the viewer page, which sells coins, also runs Stripe.js from Stripe (as Stripe
requires) and shows its frames. The
viewer, creator and video pages may not be framed (clickjacking); the overlay may, as a streaming
tool may frame it, and OBS loads it as a page of its own. No page sends a Referer: the
overlay's URL holds its token.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from server.domain.ids import check_id

PAGES = {
    "/": "index.html",
    "/creator": "creator.html",
    "/overlay/{token}": "overlay.html",
    "/v/{video_id}": "video.html",
}
FRAMEABLE = frozenset({"/overlay/{token}"})
# The page that sells coins: the only one that may load a payment provider's script.
CHECKOUT = frozenset({"/"})
# Pages whose path names an id: a path that cannot hold one is refused as the API refuses it
# (422), before the page is served.
ID_PARAMETERS = {"/v/{video_id}": "video_id"}

_POLICY = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data:",  # the pages' empty favicon is a data: URL
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
)
_COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# Stripe's 3D Secure and hosted frames (Stripe's documented policy for Stripe.js).
STRIPE_FRAMES = ("https://js.stripe.com", "https://*.js.stripe.com", "https://hooks.stripe.com")


def origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def policy(stripe_js_url: str | None = None, stripe_api_base: str | None = None) -> tuple[str, ...]:
    """The checkout page's Content-Security-Policy. With Stripe on (``stripe_js_url``), it may
    also run Stripe.js from its origin, call Stripe's API and show Stripe's frames (the
    card field, 3D Secure); a stand-in such as localstripe serves all three from its own origin."""
    if stripe_js_url is None or stripe_api_base is None:
        return _POLICY
    js, api = origin(stripe_js_url), origin(stripe_api_base)
    stripe_origin = js == "https://js.stripe.com"
    scripts = f"{js} https://*.js.stripe.com" if stripe_origin else js
    frames = " ".join(STRIPE_FRAMES) if stripe_origin else js
    connect = " ".join(dict.fromkeys((api, js)))
    extra = {"script-src": scripts, "connect-src": connect}
    rules = tuple(
        f"{rule} {extra[rule.split()[0]]}" if rule.split()[0] in extra else rule for rule in _POLICY
    )
    return (*rules, f"frame-src {frames}")


def page_headers(rules: tuple[str, ...], frameable: bool) -> dict[str, str]:
    if frameable:
        return {**_COMMON, "Content-Security-Policy": "; ".join(rules)}
    return {
        **_COMMON,
        "Content-Security-Policy": "; ".join((*rules, "frame-ancestors 'none'")),
        "X-Frame-Options": "DENY",
    }


def routes(
    client_dir: Path | None, stripe_js_url: str | None = None, stripe_api_base: str | None = None
) -> list[BaseRoute]:
    """The page routes and ``/static``, or none when the clients are not installed. With
    Stripe's URLs, the checkout page's policy lets Stripe.js in (``policy``)."""
    if client_dir is None:
        return []
    checkout = policy(stripe_js_url, stripe_api_base)
    pages: list[BaseRoute] = [
        Route(
            path,
            file_page(
                client_dir / name,
                page_headers(checkout if path in CHECKOUT else _POLICY, frameable=path in FRAMEABLE),
                ID_PARAMETERS.get(path),
            ),
        )
        for path, name in PAGES.items()
    ]
    return [*pages, Mount("/static", app=ClientFiles(directory=client_dir), name="static")]


def file_page(
    path: Path, headers: dict[str, str], id_parameter: str | None = None
) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        if id_parameter is not None:
            check_id(request.path_params[id_parameter], id_parameter)
        # Pages are small and change with the server: let browsers revalidate them.
        return FileResponse(path, headers={"Cache-Control": "no-cache", **headers})

    return serve


class ClientFiles(StaticFiles):
    """The pages' scripts and styles, which a browser must take for the type they are served as."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(_COMMON)
        return response
