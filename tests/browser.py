"""Browser-test support: headless Chromium through Playwright, console-error capture, and a
server process that comes back on the same port after a restart."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page

from tests.support import ROOT, Api


def screenshots() -> Path:
    """Where the tests save their screenshots: ``docs/screenshots/`` (shown in README) when
    GIFTING_SCREENSHOTS=1, else a scratch folder, so a test run leaves the checkout clean."""
    if os.environ.get("GIFTING_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    scratch = Path(tempfile.gettempdir()) / "gifting-screenshots"
    scratch.mkdir(exist_ok=True)
    return scratch


# A checkerboard behind the overlay's screenshot, as image editors show transparency. It is
# set through the CSSOM: the page's policy refuses an inline <style>.
CHECKERBOARD = "repeating-conic-gradient(#2a2d34 0% 25%, #1f2127 0% 50%) 0 0 / 48px 48px"


def chromium_path() -> str:
    """Debian's chromium (Playwright's own browser download is not used). Without it the
    browser tests skip, unless GIFTING_REQUIRE_BROWSER=1 (CI) makes that a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        reason = "no chromium on PATH (apt-get install chromium) for the browser tests"
        if os.environ.get("GIFTING_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; GIFTING_REQUIRE_BROWSER=1 requires them")
        pytest.skip(reason)
    return found


@dataclass
class ConsoleWatch:
    """Every console error and uncaught exception of the pages it watches.

    `tolerate` holds patterns of messages expected for a while (a server restart makes the
    browser log refused WebSocket handshakes); anything else is a failure."""

    errors: list[str] = field(default_factory=list)
    tolerate: list[re.Pattern[str]] = field(default_factory=list)

    def watch(self, page: Page, name: str) -> Page:
        page.on("console", lambda message: self._console(name, message))
        page.on("pageerror", lambda error: self._page_error(name, error))
        return page

    def _console(self, name: str, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if any(pattern.search(message.text) for pattern in self.tolerate):
            return
        self.errors.append(f"{name}: console.error: {message.text} ({message.location.get('url')})")

    def _page_error(self, name: str, error: Error) -> None:
        self.errors.append(f"{name}: uncaught: {error.message}")

    def assert_clean(self) -> None:
        assert not self.errors, "errors in the browser console:\n" + "\n".join(self.errors)


def overlay_url(api: Api, creator: str) -> str:
    reply = api.http.get("/v1/creator/overlay", headers=api.auth(creator, "creator"))
    assert reply.status_code == 200, reply.text
    url: str = reply.json()["url"]
    return url


def creator_token(api: Api, creator: str, name: str) -> None:
    """Give the creator a display name (demo tokens take one) before pages show it."""
    reply = api.http.post("/v1/dev/token", json={"user_id": creator, "role": "creator", "name": name})
    assert reply.status_code == 200, reply.text
    api.tokens[(creator, "creator")] = reply.json()["token"]
