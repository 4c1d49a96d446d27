"""The browser clients are served as plain files, and nothing else is reachable through them."""

from __future__ import annotations

import pytest

from tests.support import Api


@pytest.mark.parametrize(
    ("path", "marker"),
    [("/", b"/static/js/viewer.js"), ("/creator", b"/static/js/creator.js"), ("/overlay/any", b"overlay")],
)
def test_each_page_is_served(api: Api, path: str, marker: bytes) -> None:
    reply = api.http.get(path)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert marker in reply.content and reply.headers["cache-control"] == "no-cache"


def test_static_files_are_served_with_their_types(api: Api) -> None:
    script = api.http.get("/static/js/live.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert b"class RoomConnection" in script.content
    assert api.http.get("/static/css/overlay.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/..%2fpyproject.toml",
        "/static/js/../../server/settings.py",
        "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/static/nope.js",
    ],
)
def test_nothing_outside_the_client_directory_is_served(api: Api, path: str) -> None:
    reply = api.http.get(path)
    assert reply.status_code == 404, (path, reply.status_code)
    assert b"[project]" not in reply.content and b"root:" not in reply.content
