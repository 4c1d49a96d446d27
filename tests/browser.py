"""Browser-test support, shared by every browser test file (tests/conftest.py loads it as a
plugin): headless Chromium through Playwright, a server of the browser tests' own, console-error
capture, and the checks every page must pass at phone and desktop size: nothing wider than the
viewport, no layout shift, no serious or critical accessibility violation (axe-core)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    Playwright,
    WebSocket,
    expect,
    sync_playwright,
)

from tests.conftest import Engine
from tests.support import ROOT, Api, ServerProcess, delete_prefix, running_server, server_env, unique

PHONE_SIZE = {"width": 390, "height": 844}
DESKTOP_SIZE = {"width": 1280, "height": 800}
OVERLAY_SIZE = {"width": 1920, "height": 1080}
BOTH_SIZES = pytest.mark.parametrize("size", [PHONE_SIZE, DESKTOP_SIZE], ids=["phone", "desktop"])
# The browser tests' server ends a combo after this long without a tap.
COMBO_WINDOW_MS = 1500
TIMES = "\N{MULTIPLICATION SIGN}"  # the pages show a combo of 5 as TIMES + "5"
# A restarting server refuses connections for a moment; the browser logs each refusal.
RESTART_NOISE = [re.compile(r"WebSocket connection to .* failed"), re.compile(r"ERR_CONNECTION_REFUSED")]
# The most layout shift (the sum of every shift not caused by input, as the browser's
# layout-shift entries score them) a page may show while errors, notices and alerts appear.
MAX_LAYOUT_SHIFT = 0.1
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
# Counts every layout shift from the first paint on, and the most the page was ever wider than
# its viewport; `__layoutShift.reset()` starts again.
LAYOUT_SHIFT_WATCH = """
(() => {
  const watch = {
    total: 0, shifts: [], overflow: 0,
    reset() { this.total = 0; this.shifts = []; this.overflow = 0; },
  };
  window.__layoutShift = watch;
  // The widest the page got past its viewport, frame by frame: an animation that reaches
  // past the edge for a moment counts too.
  const measure = () => {
    const root = document.documentElement;
    if (root) watch.overflow = Math.max(watch.overflow, root.scrollWidth - root.clientWidth);
    requestAnimationFrame(measure);
  };
  requestAnimationFrame(measure);
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.hadRecentInput) continue;
      watch.total += entry.value;
      watch.shifts.push({
        value: entry.value,
        nodes: entry.sources.map((s) => s.node && s.node.nodeType === 1
          ? s.node.tagName.toLowerCase() + (s.node.dataset.testid ? `[${s.node.dataset.testid}]` : "")
            + (s.node.className ? `.${String(s.node.className).split(" ").join(".")}` : "")
          : String(s.node && s.node.nodeName)),
      });
    }
  }).observe({ type: "layout-shift", buffered: true });
})();
"""


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


# Chromium logs every 4xx answer to a fetch as a console error. An API's refusal (not enough
# coins, below the minimum withdrawal) is the API working: the page shows it as a notice,
# which the tests check. Scripts' errors and any other failed load still count.
API_REFUSAL = re.compile(r"^Failed to load resource: the server responded with a status of 4\d\d")


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
        if API_REFUSAL.search(message.text) and "/v1/" in message.location.get("url", ""):
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


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@contextmanager
def own_server(engine: Engine, logs: Path, **overrides: str) -> Iterator[ServerProcess]:
    """A server of the caller's own with these settings, its keys removed afterwards from an
    engine the tests do not own."""
    prefix = f"{unique('b')}:"
    try:
        with running_server(server_env(engine.url, prefix, **overrides), logs) as server:
            yield server
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@pytest.fixture(scope="module")
def site(engine: Engine, logs: Path, chromium: str) -> Iterator[ServerProcess]:
    """A server of one browser-test module's own, with a short hold and combo window."""
    with own_server(
        engine, logs, GIFTING_DIAMOND_HOLD_S="3600", GIFTING_COMBO_WINDOW_MS=str(COMBO_WINDOW_MS)
    ) as server:
        yield server


@pytest.fixture
def site_api(site: ServerProcess) -> Iterator[Api]:
    with httpx.Client(base_url=site.base_url, timeout=10) as http:
        yield Api(http)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium: str) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


# ---------------------------------------------------------------- pages and people


def new_page(
    browser: Browser, console: ConsoleWatch, name: str, size: dict[str, int], **context: Any
) -> Page:
    """A page in a context of its own (its own storage, like a separate device), its console
    watched and its layout shifts counted from the first paint. `context` goes to
    `new_context` (for example `reduced_motion="reduce"`, `has_touch=True`)."""
    page = browser.new_context(
        viewport={"width": size["width"], "height": size["height"]}, **context
    ).new_page()
    page.set_default_timeout(10_000)
    page.add_init_script(LAYOUT_SHIFT_WATCH)
    return console.watch(page, name)


def open_overlay(page: Page, base_url: str, url: str) -> None:
    page.goto(base_url + url)
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")


def sign_in(page: Page, user_id: str, name: str | None = None) -> None:
    page.get_by_test_id("user-id").fill(user_id)
    if name is not None:
        page.get_by_test_id("user-display-name").fill(name)
    page.get_by_test_id("sign-in-submit").click()


def named_token(api: Api, user_id: str, role: str, name: str) -> None:
    """A demo token with a display name, for the API calls made on the user's behalf."""
    reply = api.http.post("/v1/dev/token", json={"user_id": user_id, "role": role, "name": name})
    assert reply.status_code == 200, reply.text
    api.tokens[(user_id, role)] = reply.json()["token"]


def live_room(api: Api, title: str = "Mia paints live", name: str = "Mia Streams") -> tuple[str, str]:
    """A creator with a display name, and the id of their live room."""
    creator = unique("c")
    named_token(api, creator, "creator", name)
    return creator, api.open_room(creator, title)


def set_goal(api: Api, creator: str, room_id: str, coins: int) -> None:
    reply = api.http.put(
        f"/v1/rooms/{room_id}/goal", json={"coins": coins}, headers=api.auth(creator, "creator")
    )
    assert reply.status_code == 200, reply.text


def fan_with(api: Api, coins: int, name: str | None = None) -> str:
    """A viewer with at least `coins` coins, bought in packages of 5,450 (and a display name,
    if given)."""
    fan = unique("f")
    if name is not None:
        named_token(api, fan, "viewer", name)
    for _ in range(-(-coins // 5450)):
        api.buy(fan, "us_5450")
    return fan


def watch(
    browser: Browser,
    console: ConsoleWatch,
    base_url: str,
    room_id: str,
    user: str,
    name: str,
    size: dict[str, int],
    before: Callable[[Page], object] = lambda page: None,
    state: str = "open",
    **context: Any,
) -> Page:
    """A viewer signed in and watching the room, once its connection is in `state` ("closed"
    for a live that has ended); `before` sees the page before it opens."""
    page = new_page(browser, console, name, size, **context)
    before(page)
    page.goto(f"{base_url}/?room={room_id}")
    sign_in(page, user, name)
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", state)
    return page


def open_dashboard(
    browser: Browser,
    console: ConsoleWatch,
    base_url: str,
    creator: str,
    size: dict[str, int] = DESKTOP_SIZE,
    query: str = "",
    before: Callable[[Page], object] = lambda page: None,
    **context: Any,
) -> Page:
    """The creator signed in on their dashboard; `before` sees the page before it opens."""
    page = new_page(browser, console, "dashboard", size, **context)
    before(page)
    page.goto(f"{base_url}/creator{query}")
    sign_in(page, creator)
    expect(page.get_by_test_id("dashboard")).to_be_visible()
    return page


def record_sent(page: Page, kind: str, record: Callable[[dict[str, Any]], object]) -> None:
    """Hand `record` every frame of this type the page sends, as it sends it."""

    def on_socket(socket: WebSocket) -> None:
        def on_frame(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == kind:
                record(frame)

        socket.on("framesent", on_frame)

    page.on("websocket", on_socket)


def wait_until(page: Page, condition: Callable[[], object], timeout_s: float = 10) -> None:
    """Poll the condition until it holds, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)  # Playwright delivers the page's events meanwhile


def paint(page: Page, background: str) -> None:
    """A background behind a transparent page (the overlay), set through the CSSOM (the page's
    policy refuses inline styles)."""
    page.evaluate("background => { document.documentElement.style.background = background; }", background)


def say(page: Page, text: str) -> None:
    """Type a message and press Enter, as a person does."""
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")


def message(page: Page | Locator, text: str) -> Locator:
    """The chat message with exactly this text."""
    # The inner locator of a filter is relative to each item: it starts from a page.
    root = page if isinstance(page, Page) else page.page
    text_locator = root.get_by_test_id("chat-text").get_by_text(text, exact=True)
    return page.get_by_test_id("chat-message").filter(has=text_locator)


# ---------------------------------------------------------------- what every page must pass


def assert_fits(page: Page) -> None:
    """Nothing wider than the viewport, now or in any frame since the last reset (pages from
    `new_page`): no sideways scrolling at phone size, not even during an animation."""
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"the page is {scroll}px wide in a {client}px viewport"
    widest = page.evaluate("window.__layoutShift ? window.__layoutShift.overflow : 0")
    assert widest <= 0, f"the page was {widest}px wider than its viewport in a frame since the last reset"


def reset_layout_shift(page: Page) -> None:
    """Count layout shifts from now on (after the page has loaded and signed in)."""
    page.evaluate("window.__layoutShift.reset()")


def layout_shift(page: Page) -> tuple[float, list[dict[str, Any]]]:
    """The layout shift counted so far, and each shift with the elements it moved."""
    total, shifts = page.evaluate("[window.__layoutShift.total, window.__layoutShift.shifts]")
    return float(total), shifts


def assert_no_layout_shift(page: Page, limit: float = MAX_LAYOUT_SHIFT) -> None:
    total, shifts = layout_shift(page)
    assert total <= limit, f"layout shift {total:.3f} > {limit}: {shifts}"


# Waits for every running animation of at most a second (entrances and fades of notices) to end.
SHORT_ANIMATIONS_SETTLED = """async () => {
  const short = document.getAnimations().filter((animation) => {
    const timing = animation.effect && animation.effect.getComputedTiming();
    return timing && Number.isFinite(timing.endTime) && timing.endTime <= 1000;
  });
  await Promise.allSettled(short.map((animation) => animation.finished));
}"""


def accessibility_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of the given impacts on the page as it is now, one line each.

    axe runs through the DevTools protocol, so the page's own content security policy (which
    refuses inline scripts) stays in force for everything else."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    # Contrast is a property of what stays on screen: a notice fading in (a short entrance
    # animation) is checked once it is there, not halfway through its fade.
    page.evaluate(SHORT_ANIMATIONS_SETTLED)
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, { resultTypes: ['violations'] })).violations"
    )
    return [
        f"{v['impact']} {v['id']}: {v['help']} — "
        + "; ".join(
            node["target"][0] if isinstance(node["target"][0], str) else str(node["target"])
            for node in v["nodes"][:5]
        )
        for v in violations
        if v["impact"] in impacts
    ]


def assert_accessible(page: Page) -> None:
    found = accessibility_violations(page)
    assert not found, "accessibility violations:\n" + "\n".join(found)


def assert_page_quality(page: Page, console: ConsoleWatch, layout_limit: float = MAX_LAYOUT_SHIFT) -> None:
    """Every page, at every size, after what a test made happen on it: it fits the viewport,
    nothing moved under the user (layout shift since the last reset), no serious or critical
    accessibility violation, and nothing in the console."""
    assert_fits(page)
    assert_no_layout_shift(page, layout_limit)
    assert_accessible(page)
    console.assert_clean()
