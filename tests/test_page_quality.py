"""What every page must pass at phone size (390 by 844) and desktop size (1280 by 800), in headless
Chromium, while errors, notices, gift alerts and a battle's score bar appear on it: nothing
wider than the viewport, a layout shift of at most 0.1, no serious or critical accessibility
violation (axe-core), and no JavaScript error."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import (
    BOTH_SIZES,
    PHONE_SIZE,
    ConsoleWatch,
    assert_page_quality,
    fan_with,
    live_room,
    new_page,
    open_dashboard,
    open_overlay,
    overlay_url,
    reset_layout_shift,
    say,
    sign_in,
    watch,
)
from tests.support import Api, ServerProcess, start_battle, unique

pytestmark = pytest.mark.browser


@BOTH_SIZES
def test_the_viewer_page(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    fan, viewer = fan_with(api, 29_999), unique("v")  # enough for a Lion

    page = new_page(browser, console, "viewer", size)
    page.goto(site.base_url + "/")
    sign_in(page, viewer, "Vera Quinn")
    expect(page.get_by_test_id(f"join-{room_id}")).to_be_visible()
    assert_page_quality(page, console)

    page.get_by_test_id(f"join-{room_id}").click()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    if size == PHONE_SIZE:  # the tray is a bottom sheet on a phone
        page.get_by_test_id("open-gifts").click()
    expect(page.get_by_test_id("gift-rose")).to_be_visible()
    reset_layout_shift(page)

    # With no coins, a tap is refused: the notice overlays and moves nothing.
    page.get_by_test_id("gift-rose").click()
    expect(page.get_by_role("alert").filter(has_text="coins")).to_be_visible()
    # Gifts from someone else: small ones and a big one.
    for _ in range(3):
        assert api.gift(fan, room_id, "rose").status_code == 200
    assert api.gift(fan, room_id, "lion").status_code == 200
    expect(page.get_by_test_id("feed")).to_contain_text("Lion")
    expect(page.locator('[data-testid=moment][data-tier="3"]')).to_be_visible()
    chat_and_likes(page)
    assert_page_quality(page, console)

    page.get_by_test_id("open-shop").click()
    expect(page.get_by_test_id("shop")).to_be_visible()
    assert_page_quality(page, console)


def chat_and_likes(page: Page) -> None:
    say(page, "hello there")
    expect(page.get_by_test_id("chat-list")).to_contain_text("hello there")


@BOTH_SIZES
def test_the_creator_dashboard(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    fan = fan_with(api, 1_000)  # a Galaxy
    page = open_dashboard(browser, console, site.base_url, creator, size)
    expect(page.get_by_test_id("live-state")).to_have_attribute("data-live", "true")
    reset_layout_shift(page)

    assert api.gift(fan, room_id, "galaxy").status_code == 200
    expect(page.get_by_test_id("ledger-row")).to_have_count(1)
    page.get_by_test_id("withdraw-input").fill("1")
    page.get_by_test_id("withdraw-submit").click()
    expect(page.get_by_role("alert").filter(has_text="minimum")).to_be_visible()
    assert_page_quality(page, console)

    # The confirm dialog fits the screen.
    page.get_by_test_id("end-live").click()
    dialog = page.get_by_test_id("end-dialog")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], box
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], box
    assert_page_quality(page, console)
    page.get_by_test_id("end-cancel").click()
    expect(dialog).to_be_hidden()


@BOTH_SIZES
def test_the_overlay(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    fan = fan_with(api, 29_999)  # a Lion
    page = new_page(browser, console, "overlay", size)
    open_overlay(page, site.base_url, overlay_url(api, creator) + "?chat=1")
    reset_layout_shift(page)
    assert api.gift(fan, room_id, "corgi").status_code == 200
    assert api.gift(fan, room_id, "lion").status_code == 200
    expect(page.get_by_test_id("alert-gift")).to_have_text("Corgi")
    assert_page_quality(page, console)
    # The Lion is a grand moment, after the Corgi's alert.
    expect(page.get_by_test_id("moment-name")).to_have_text(fan.capitalize(), timeout=8000)
    assert_page_quality(page, console)
    # Played to its end, every frame of it inside the window.
    expect(page.get_by_test_id("moment")).to_have_count(0, timeout=12_000)
    assert_page_quality(page, console)


@BOTH_SIZES
def test_the_pages_during_a_battle(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator, room_id = live_room(api, "Battle night", "Carol Ray")
    opponent, other_room = live_room(api, "The other side", "Erin Fox")
    fan = fan_with(api, 1_000, "Ann Lee")
    viewer = watch(browser, console, site.base_url, room_id, unique("v"), "Vera Quinn", size)
    overlay = new_page(browser, console, "overlay", size)
    open_overlay(overlay, site.base_url, overlay_url(api, creator))
    dashboard = open_dashboard(browser, console, site.base_url, creator, size)
    expect(dashboard.get_by_test_id("battle-card")).to_have_attribute("data-mode", "idle")
    for page in (viewer, overlay, dashboard):
        reset_layout_shift(page)

    # The bar appears over the pages and moves with the gifts: nothing under it moves.
    start_battle(api, creator, opponent)
    assert api.gift(fan, room_id, "galaxy").status_code == 200
    assert api.gift(fan, other_room, "rose").status_code == 200
    for page in (viewer, overlay, dashboard):
        expect(page.get_by_test_id("battle-score-left")).to_have_attribute("data-score", "1000")
        expect(page.get_by_test_id("battle-score-right")).to_have_attribute("data-score", "1")
        assert_page_quality(page, console)


@BOTH_SIZES
def test_the_video_page(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator = unique("c")
    body = {"title": "A very long title of a video " * 4, "url": "https://videos.example/" + "x" * 300}
    reply = api.http.post("/v1/videos", json=body, headers=api.auth(creator, "creator"))
    assert reply.status_code == 201, reply.text
    video_id = reply.json()["id"]
    fan, viewer = fan_with(api, 29_999), unique("v")
    gift = {"gift_id": "lion", "count": 1, "idempotency_key": unique("k")}
    assert api.http.post(f"/v1/videos/{video_id}/gifts", json=gift, headers=api.auth(fan)).status_code == 200

    page = new_page(browser, console, "video", size)
    page.goto(f"{site.base_url}/v/{video_id}")
    expect(page.get_by_test_id("top-gifters")).to_contain_text(fan.capitalize())
    assert_page_quality(page, console)
    sign_in(page, viewer, "Vera Quinn")
    expect(page.get_by_test_id("gift-rose")).to_be_visible()
    reset_layout_shift(page)
    # With no coins, a tap is refused: the notice overlays and moves nothing.
    page.get_by_test_id("gift-rose").click()
    expect(page.get_by_role("alert").filter(has_text="coins")).to_be_visible()
    assert_page_quality(page, console)
    # A dear gift asks first.
    api.buy(viewer, "us_5450")
    page.reload()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "5450")
    page.get_by_test_id("gift-galaxy").click()
    expect(page.get_by_test_id("confirm-gift")).to_be_visible()
    assert_page_quality(page, console)
    page.get_by_test_id("confirm-send").click()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "4450")
    assert_page_quality(page, console)
