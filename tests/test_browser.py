"""The browser clients in client_demo/, end to end in headless Chromium on a real server.

A viewer buys coins through the sandbox checkout and taps a gift five times; the streamer's
overlay shows the finished combo with the viewer's name and the count 5; the balance on screen, the
wallet and the creator's pending diamonds agree. The creator's test alert reaches the
overlay and no viewer, and the overlay rides out a server restart. Any console error fails.
The pages' screenshots in docs/screenshots/ are taken here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.browser import (
    CHECKERBOARD,
    ConsoleWatch,
    chromium_path,
    creator_token,
    overlay_url,
    screenshots,
)
from tests.conftest import Engine
from tests.support import Api, ServerProcess, delete_prefix, server_env, unique

pytestmark = pytest.mark.browser

COMBO_WINDOW_MS = 1500
TIMES = "\N{MULTIPLICATION SIGN}"  # the pages show a combo of 5 as TIMES + "5"
SHARE = 0.5
VIEWER_SIZE = {"width": 1280, "height": 800}
OVERLAY_SIZE = {"width": 1920, "height": 1080}
# A restarting server refuses connections for a moment; the browser logs each refusal.
RESTART_NOISE = [re.compile(r"WebSocket connection to .* failed"), re.compile(r"ERR_CONNECTION_REFUSED")]


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
def site(engine: Engine, logs: Path, chromium: str) -> Iterator[ServerProcess]:
    prefix = f"{unique('b')}:"
    env = server_env(
        engine.url,
        prefix,
        GIFTING_DIAMOND_HOLD_S="3600",
        GIFTING_COMBO_WINDOW_MS=str(COMBO_WINDOW_MS),
    )
    server = ServerProcess(env, logs / f"server-browser-{unique('')}.log").start()
    try:
        yield server
    finally:
        server.stop()
        if not engine.owned:
            delete_prefix(engine.url, prefix)


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


def new_page(browser: Browser, console: ConsoleWatch, name: str, size: dict[str, int]) -> Page:
    # Each page in its own context: its own sessionStorage, like a separate device.
    page = browser.new_context(viewport={"width": size["width"], "height": size["height"]}).new_page()
    page.set_default_timeout(10_000)
    return console.watch(page, name)


def open_overlay(page: Page, base_url: str, url: str) -> None:
    page.goto(base_url + url)
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")


def open_room(api: Api, creator: str, title: str) -> str:
    reply = api.http.post("/v1/rooms", json={"title": title}, headers=api.auth(creator, "creator"))
    assert reply.status_code == 201, reply.text
    room_id: str = reply.json()["room_id"]
    return room_id


def sign_in(page: Page, user_id: str, name: str | None = None) -> None:
    page.get_by_test_id("user-id").fill(user_id)
    if name is not None:
        page.get_by_test_id("user-display-name").fill(name)
    page.get_by_test_id("sign-in-submit").click()


def test_a_viewers_combo_shows_on_the_overlay_and_the_books_match(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, viewer, name = unique("c"), unique("v"), "Vera Quinn"
    creator_token(api, creator, "Mia Streams")
    room_id = open_room(api, creator, "Mia paints live")
    goal = api.http.put(
        f"/v1/rooms/{room_id}/goal", json={"coins": 100}, headers=api.auth(creator, "creator")
    )
    assert goal.status_code == 200, goal.text

    overlay = new_page(browser, console, "overlay", OVERLAY_SIZE)
    open_overlay(overlay, site.base_url, overlay_url(api, creator))

    page = new_page(browser, console, "viewer", VIEWER_SIZE)
    page.goto(site.base_url + "/")
    sign_in(page, viewer, name)
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "0")
    page.get_by_test_id(f"join-{room_id}").click()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")

    # Buy 100 coins: the order is paid through the sandbox's signed webhook.
    page.get_by_test_id("open-shop").click()
    page.get_by_test_id("package-us_100").click()
    expect(page.get_by_test_id("purchase-state")).to_have_attribute("data-state", "paid")
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "100")
    page.get_by_test_id("shop").get_by_role("button", name="Close").click()

    # Five quick taps of a 5-coin gift: five gifts of count 1, one combo.
    gift = page.get_by_test_id("gift-finger_heart")
    for _ in range(5):
        gift.click()
    expect(page.get_by_test_id("combo-count")).to_have_text(f"{TIMES}5")
    expect(overlay.get_by_test_id("live-combo-count")).to_have_text(f"{TIMES}5")
    page.screenshot(path=screenshots() / "viewer.png")

    # The combo ends after the window: one alert, with the viewer's name and the count.
    alert = overlay.get_by_test_id("alert")
    expect(alert).to_be_visible()
    expect(overlay.get_by_test_id("alert-name")).to_have_text(name)
    expect(overlay.get_by_test_id("alert-count")).to_have_text(f"{TIMES}5")
    expect(overlay.get_by_test_id("alert-gift")).to_have_text("Finger Heart")
    expect(overlay.get_by_test_id("top-gifters")).to_contain_text(name)
    expect(overlay.get_by_test_id("goal-text")).to_have_text("Goal: 25 / 100 coins")
    overlay.evaluate(
        "background => { document.documentElement.style.background = background; }", CHECKERBOARD
    )
    overlay.screenshot(path=screenshots() / "overlay.png")
    # Alerts last at most 4 s.
    expect(alert).to_be_hidden(timeout=4500)

    # The books: the balance on screen is the wallet's, and the creator earned
    # floor(0.5 * 5) = 2 diamonds for each of the five gifts.
    expected_coins = 100 - 5 * 5
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", str(expected_coins))
    assert api.coins(viewer) == expected_coins
    expected_diamonds = 5 * int(5 * SHARE)
    assert api.earnings(creator)["pending"] == expected_diamonds

    dashboard = new_page(browser, console, "dashboard", VIEWER_SIZE)
    dashboard.goto(site.base_url + "/creator")
    sign_in(dashboard, creator)
    expect(dashboard.get_by_test_id("pending")).to_have_attribute("data-diamonds", str(expected_diamonds))
    expect(dashboard.get_by_test_id("live-state")).to_have_attribute("data-live", "true")
    console.assert_clean()


def test_the_test_alert_shows_on_the_overlay_only(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, viewer = unique("c"), unique("v")
    creator_token(api, creator, "Mia Streams")
    room_id = open_room(api, creator, "Mia paints live")
    api.buy(viewer)
    for _ in range(3):
        assert api.gift(viewer, room_id, "hand_hearts").status_code == 200

    overlay = new_page(browser, console, "overlay", OVERLAY_SIZE)
    open_overlay(overlay, site.base_url, overlay_url(api, creator))
    page = new_page(browser, console, "viewer", VIEWER_SIZE)
    page.goto(f"{site.base_url}/?room={room_id}")
    sign_in(page, viewer, "Theo")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")

    dashboard = new_page(browser, console, "dashboard", VIEWER_SIZE)
    dashboard.goto(site.base_url + "/creator")
    sign_in(dashboard, creator)
    expect(dashboard.get_by_test_id("pending")).to_have_attribute("data-diamonds", "150")
    expect(dashboard.get_by_test_id("pending-value")).to_have_text("$0.75")
    expect(dashboard.get_by_test_id("overlay-url")).to_have_value(re.compile(r"/overlay/[A-Za-z0-9_-]+$"))
    dashboard.get_by_test_id("test-alert").click()
    expect(dashboard.get_by_test_id("overlay-state")).to_contain_text("Test alert sent")

    expect(overlay.get_by_test_id("alert-name")).to_have_text("Test Viewer")
    expect(overlay.get_by_test_id("alert-count")).to_have_text(f"{TIMES}5")
    # Viewers never get it: nothing about it reaches the viewer page.
    page.wait_for_timeout(500)
    expect(page.get_by_text("Test Viewer")).to_have_count(0)
    dashboard.screenshot(path=screenshots() / "creator.png")
    console.assert_clean()


def test_the_overlay_reconnects_after_a_server_restart(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, viewer = unique("c"), unique("v")
    room_id = api.open_room(creator)
    api.buy(viewer)
    overlay = new_page(browser, console, "overlay", OVERLAY_SIZE)
    open_overlay(overlay, site.base_url, overlay_url(api, creator))
    status = overlay.get_by_test_id("connection-state")

    console.tolerate = RESTART_NOISE
    site.stop()
    expect(status).to_have_attribute("data-state", "reconnecting")
    site.start()
    expect(status).to_have_attribute("data-state", "open")
    console.tolerate = []

    # A gift sent after the restart reaches the resumed overlay: a Corgi can't streak, so
    # it is an alert of its own at once.
    assert api.gift(viewer, room_id, "corgi").status_code == 200
    expect(overlay.get_by_test_id("alert-name")).to_have_text(viewer.capitalize())
    expect(overlay.get_by_test_id("alert-gift")).to_have_text("Corgi")
    console.assert_clean()
