"""The browser clients are served as plain files, and nothing else is reachable through them."""

from __future__ import annotations

import pytest

from tests.support import Api


@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/", b"/static/js/viewer.js"),
        ("/creator", b"/static/js/creator.js"),
        ("/overlay/any", b"overlay"),
        ("/v/any", b"/static/js/video.js"),
    ],
)
def test_each_page_is_served(api: Api, path: str, marker: bytes) -> None:
    reply = api.http.get(path)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert marker in reply.content and reply.headers["cache-control"] == "no-cache"


def test_a_video_page_of_an_impossible_id_is_refused(api: Api) -> None:
    reply = api.http.get("/v/a%7Bb")
    assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request"


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


def csp(reply_headers: object) -> dict[str, str]:
    header = reply_headers["content-security-policy"]  # type: ignore[index]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in (p.strip() for p in header.split(";")) if d}


@pytest.mark.parametrize("path", ["/", "/creator", "/v/any"])
def test_the_pages_carry_the_security_headers_and_cannot_be_framed(api: Api, path: str) -> None:
    headers = api.http.get(path).headers
    policy = csp(headers)
    # Only the pages' own files: no inline script or style, nothing from elsewhere.
    assert policy["default-src"] == "'self'" and policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert (policy["object-src"], policy["base-uri"]) == ("'none'", "'none'")
    assert policy["frame-ancestors"] == "'none'" and headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_the_overlay_page_can_be_framed_and_sends_no_referrer(api: Api) -> None:
    """An OBS browser source, or a streaming tool that frames the overlay, must load it; its
    URL holds the overlay token, which no Referer may carry elsewhere."""
    headers = api.http.get("/overlay/any").headers
    policy = csp(headers)
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert "frame-ancestors" not in policy and "x-frame-options" not in headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_static_files_are_not_sniffed(api: Api) -> None:
    for path in ("/static/js/live.js", "/static/css/overlay.css"):
        assert api.http.get(path).headers["x-content-type-options"] == "nosniff"
