"""The viewer page in headless Chromium on a real server, at phone and desktop size: a combo is
one badge and one feed row, a refused tap leaves the tray where it was (the issue's mis-tap),
big gifts play their moments one after the other, the checkout shows its notices before Pay
and buys once on a double click, a big gift asks first, refusals say the numbers, the region
picks the currency, and the end of a live shows as such."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser import (
    BOTH_SIZES,
    DESKTOP_SIZE,
    PHONE_SIZE,
    RESTART_NOISE,
    TIMES,
    ConsoleWatch,
    assert_page_quality,
    fan_with,
    live_room,
    own_server,
    record_sent,
    reset_layout_shift,
    say,
    screenshots,
    wait_until,
    watch,
)
from tests.conftest import Engine
from tests.support import Api, ServerProcess, unique

pytestmark = pytest.mark.browser

# Records the gift moments as they come and go on the stage: the most on screen at once, and
# the tier and sender of each, in order.
MOMENT_WATCH = """
(() => {
  const seen = { max: 0, order: [] };
  window.__moments = seen;
  const observe = () => {
    const layer = document.querySelector('[data-testid="moment-layer"]');
    if (!layer) return setTimeout(observe, 20);
    new MutationObserver((records) => {
      for (const record of records) {
        for (const node of record.addedNodes) {
          if (node.dataset && node.dataset.testid === "moment") {
            const name = node.querySelector('[data-testid="moment-name"]').textContent;
            seen.order.push([node.dataset.tier, name]);
          }
        }
      }
      seen.max = Math.max(seen.max, layer.querySelectorAll('[data-testid="moment"]').length);
    }).observe(layer, { childList: true });
  };
  observe();
})();
"""


def watch_sending(
    browser: Browser, console: ConsoleWatch, base_url: str, room_id: str, viewer: str, size: dict[str, int]
) -> tuple[Page, list[dict[str, Any]]]:
    """Vera Quinn watching the room, and every gift frame her page sends, as it sends it."""
    sent: list[dict[str, Any]] = []
    page = watch(
        browser,
        console,
        base_url,
        room_id,
        viewer,
        "Vera Quinn",
        size,
        lambda p: record_sent(p, "gift", sent.append),
    )
    return page, sent


def open_tray(page: Page, size: dict[str, int]) -> None:
    """On a phone the tray is a bottom sheet behind the Gift button."""
    if size == PHONE_SIZE:
        page.get_by_test_id("open-gifts").click()
    expect(page.get_by_test_id("gift-rose")).to_be_visible()
    # The sheet slides up (0.18 s): measure once it is in place.
    sheet = page.get_by_test_id("gift-sheet")
    wait_until(page, lambda: sheet.evaluate("sheet => sheet.getAnimations().length") == 0)


def assert_touch_targets(page: Page) -> None:
    """Every control on screen is at least 44 by 44 px (a finger's width)."""
    small = page.evaluate(
        """[...document.querySelectorAll('button, input:not([type=checkbox]), select, summary')]
             .filter((element) => element.checkVisibility() && element.getClientRects().length)
             .map((el) => [el.dataset.testid || el.textContent, el.getBoundingClientRect()])
             .filter(([, box]) => box.width < 44 || box.height < 44)
             .map(([name, box]) => `${name}: ${Math.round(box.width)}x${Math.round(box.height)}`)"""
    )
    assert small == [], small


def tray_boxes(page: Page) -> list[dict[str, float]]:
    boxes: list[dict[str, float]] = page.evaluate(
        """[...document.querySelectorAll('[data-testid="gift-tray"] .gift')].map((button) => {
             const box = button.getBoundingClientRect();
             return { x: box.x, y: box.y, width: box.width, height: box.height };
           })"""
    )
    return boxes


@BOTH_SIZES
def test_a_combo_is_one_badge_and_one_feed_row(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    viewer, friend = unique("v"), unique("v")
    api.buy(viewer, "us_100")
    page, sent = watch_sending(browser, console, site.base_url, room_id, viewer, size)
    open_tray(page, size)
    reset_layout_shift(page)
    rose = page.get_by_test_id("gift-rose")
    for _ in range(12):
        rose.click()
    expect(page.get_by_test_id("combo-count")).to_have_text(f"{TIMES}12")
    # One badge for the streak, one feed row, no element per tap.
    expect(page.get_by_test_id("combo")).to_have_count(1)
    rows = page.get_by_test_id("feed-row")
    expect(rows).to_have_count(1)
    expect(rows.locator(".feed-text")).to_have_text("Vera Quinn sent Rose")
    expect(rows.get_by_test_id("feed-count")).to_have_text(f"{TIMES}12")
    assert len(sent) == 12 and {frame["gift_id"] for frame in sent} == {"rose"}
    assert len({frame["idempotency_key"] for frame in sent}) == 12
    say(page, "what a stream!")
    say(friend_page(browser, console, site.base_url, room_id, friend), "so good")
    expect(page.get_by_test_id("chat-list")).to_contain_text("what a stream!")
    expect(page.get_by_test_id("chat-list")).to_contain_text("so good")
    if size == PHONE_SIZE:
        page.get_by_test_id("close-gifts").click()
        expect(page.get_by_test_id("gift-sheet")).to_be_hidden()
    page.screenshot(path=screenshots() / ("viewer-phone.png" if size == PHONE_SIZE else "viewer.png"))
    if size == PHONE_SIZE:
        assert_touch_targets(page)
    # The streak ends: the badge fades, the row stays with its count, the chat says it once.
    expect(page.get_by_test_id("notice-gift")).to_have_text(f"Vera Quinn sent Rose {TIMES}12")
    expect(page.get_by_test_id("combo")).to_have_count(0)
    expect(rows).to_have_count(1)
    assert_page_quality(page, console)


def test_a_refused_tap_leaves_the_tray_where_it_was(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    """The issue's mis-tap: at 390x844 a viewer without enough coins taps Lion, the refusal
    appears, and a second tap on the same screen point is Lion again."""
    api = site_api
    _creator, room_id = live_room(api)
    viewer = unique("v")
    api.buy(viewer, "us_100")
    page, sent = watch_sending(browser, console, site.base_url, room_id, viewer, PHONE_SIZE)
    open_tray(page, PHONE_SIZE)
    lion = page.get_by_test_id("gift-lion")
    expect(lion).to_have_attribute("data-affordable", "false")
    expect(lion).to_have_accessible_name(re.compile(r"Lion.*not enough coins"))
    expect(page.get_by_test_id("gift-rose")).to_have_attribute("data-affordable", "true")
    reset_layout_shift(page)
    before = tray_boxes(page)
    box = lion.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    page.mouse.click(x, y)
    refusal = page.get_by_role("alert").filter(has_text="coins")
    expect(refusal).to_be_visible()
    assert tray_boxes(page) == before
    page.mouse.click(x, y)
    wait_until(page, lambda: len(sent) == 2)
    assert [frame["gift_id"] for frame in sent] == ["lion", "lion"]
    assert sent[0]["idempotency_key"] != sent[1]["idempotency_key"]
    expect(page.get_by_test_id("gift-sheet")).to_be_visible()
    assert tray_boxes(page) == before
    assert api.coins(viewer) == 100
    assert_page_quality(page, console)
    # A tap outside the sheet shuts it.
    page.get_by_test_id("stage").click(position={"x": 200, "y": 300})
    expect(page.get_by_test_id("gift-sheet")).to_be_hidden()
    expect(page.get_by_test_id("open-gifts")).to_have_attribute("aria-expanded", "false")


def test_a_gift_tapped_while_reconnecting_goes_once_when_the_connection_is_back(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    viewer = unique("v")
    api.buy(viewer, "us_100")
    page, sent = watch_sending(browser, console, site.base_url, room_id, viewer, PHONE_SIZE)
    open_tray(page, PHONE_SIZE)
    reset_layout_shift(page)
    waiting = page.get_by_test_id("toasts").get_by_text(re.compile("sent when the connection is back"))
    console.tolerate = RESTART_NOISE
    site.stop()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")
    page.get_by_test_id("gift-finger_heart").click()
    expect(waiting).to_be_visible()
    assert sent == []
    site.start()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(waiting).to_have_count(0)
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "95")
    console.tolerate = []
    assert [frame["gift_id"] for frame in sent] == ["finger_heart"]
    assert api.coins(viewer) == 95
    assert_page_quality(page, console)


# The boxes of an element's text that fall outside the element (cut off by its overflow).
TEXT_CLIPPED = """(element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  const box = element.getBoundingClientRect();
  return [...range.getClientRects()]
    .filter((r) => r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.bottom > box.bottom + 0.5)
    .map((r) => [r.left, r.right, r.bottom]);
}"""
# How many lines an element's text takes.
TEXT_LINES = """(element) => {
  const range = document.createRange();
  range.selectNodeContents(element);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}"""


def bottom(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return box["y"] + box["height"]


def test_a_viewer_spreads_their_return_over_the_window_a_restarting_server_names(
    engine: Engine, logs: Path, browser: Browser, console: ConsoleWatch
) -> None:
    # A server that serves its returning clients at 0.01 a second: its 1012 names a window of
    # 100 s per WebSocket connection it holds (the page's).
    with (
        own_server(engine, logs, GIFTING_RECONNECT_RATE="0.01") as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        api = Api(http)
        _creator, room_id = live_room(api)
        viewer = unique("v")
        # Every draw in the middle: the first delay's own is 0.375 s, and half the window
        # adds 50 s per connection.
        page = watch(
            browser,
            console,
            server.base_url,
            room_id,
            viewer,
            "viewer",
            PHONE_SIZE,
            before=lambda page: page.add_init_script("Math.random = () => 0.5;"),
        )
        state = page.get_by_test_id("connection-state")
        console.tolerate = RESTART_NOISE
        server.stop()
        expect(state).to_have_attribute("data-state", "reconnecting")
        shown = re.search(r"Reconnecting in (\d+) s", state.inner_text())
        assert shown is not None, state.inner_text()
        # Without the window, the page would come back in 1 s and find the server still down.
        assert int(shown[1]) >= 51, state.inner_text()
        # The wait is read whole on a phone, and the top bar still holds "Buy coins" on one
        # line: the pill used to cut it to "Reconnecting in …" and push the button onto two.
        assert page.evaluate(TEXT_CLIPPED, state.element_handle()) == [], state.inner_text()
        shop = page.get_by_test_id("open-shop")
        assert page.evaluate(TEXT_LINES, shop.element_handle()) == 1
        assert bottom(shop) <= bottom(page.locator(".topbar"))
        console.tolerate = []


@pytest.mark.parametrize("motion", ["no-preference", "reduce"])
def test_big_gifts_play_their_moments_one_after_the_other(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, motion: str
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    fan, viewer = fan_with(api, 29_999 + 1_000, "Rich Fan"), unique("v")

    def before(page: Page) -> None:
        page.add_init_script(MOMENT_WATCH)

    page = watch(
        browser,
        console,
        site.base_url,
        room_id,
        viewer,
        "Vera Quinn",
        PHONE_SIZE,
        before,
        reduced_motion=motion,
    )
    reset_layout_shift(page)
    assert api.gift(fan, room_id, "lion").status_code == 200
    assert api.gift(fan, room_id, "galaxy").status_code == 200
    grand = page.locator('[data-testid=moment][data-tier="3"]')
    expect(grand).to_be_visible()
    expect(grand.get_by_test_id("moment-name")).to_have_text("Rich Fan")
    expect(grand.get_by_test_id("moment-gift")).to_have_text("sent Lion")
    # The Galaxy waits for the Lion to finish (6 s), then plays (3 s).
    second = page.locator('[data-testid=moment][data-tier="2"]')
    expect(second).to_be_visible(timeout=12_000)
    expect(grand).to_have_count(0)
    expect(second).to_have_count(0, timeout=6_000)
    seen = page.evaluate("window.__moments")
    assert seen["order"] == [["3", "Rich Fan"], ["2", "Rich Fan"]]
    assert seen["max"] == 1
    assert_page_quality(page, console)


@BOTH_SIZES
def test_the_checkout_shows_its_notices_before_pay_and_a_double_click_buys_once(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    viewer = unique("v")
    page = watch(browser, console, site.base_url, room_id, viewer, "Vera Quinn", size)
    reset_layout_shift(page)
    page.get_by_test_id("open-shop").click()
    shop = page.get_by_test_id("shop")
    expect(shop).to_be_visible()
    expect(page.get_by_test_id("package-us_100")).to_contain_text("$1.99")
    page.get_by_test_id("package-us_550").click()
    checkout = page.get_by_test_id("checkout")
    expect(checkout).to_be_visible()
    expect(page.get_by_test_id("checkout-coins")).to_have_text("550 coins")
    expect(page.get_by_test_id("checkout-price")).to_have_text("$9.99")
    expect(page.get_by_test_id("coin-terms")).to_have_text(
        "Coins are for gifts only: they can't be refunded, exchanged or transferred."
    )
    expect(page.get_by_test_id("scam-notice")).to_have_text(
        "Coins are sold only here. Nobody can give you free coins: offers of free coins are scams."
    )
    # Nothing is bought before Pay.
    assert api.coins(viewer) == 0
    assert_page_quality(page, console)
    if size == PHONE_SIZE:
        assert_touch_targets(page)
    page.get_by_test_id("pay").dblclick()
    state = page.get_by_test_id("purchase-state")
    expect(state).to_have_attribute("data-state", "paid")
    expect(state).to_have_text("Paid: 550 coins added. Your balance is 550 coins.")
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "550")
    assert api.coins(viewer) == 550
    assert [(entry["kind"], entry["delta"]) for entry in api.ledger(viewer)] == [("purchase", 550)]
    page.get_by_test_id("checkout-done").click()
    expect(shop).to_be_hidden()
    assert_page_quality(page, console)


def test_a_big_gift_asks_first_unless_told_not_to_for_this_live(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    _other, other_room = live_room(api, "Another live")
    viewer = unique("v")
    api.buy(viewer, "us_2650")
    api.buy(viewer, "us_1250")  # 3,900 coins
    page, sent = watch_sending(browser, console, site.base_url, room_id, viewer, DESKTOP_SIZE)
    confirm = page.get_by_test_id("confirm-gift")
    galaxy = page.get_by_test_id("gift-galaxy")
    galaxy.click()
    expect(confirm).to_be_visible()
    expect(page.get_by_test_id("confirm-title")).to_have_text("Send Galaxy?")
    expect(page.get_by_test_id("confirm-text")).to_have_text(
        "Galaxy costs 1,000 coins. Your balance: 3,900 coins; after this gift: 2,900. Gifts can't be undone."
    )
    assert_page_quality(page, console)
    page.get_by_test_id("confirm-cancel").click()
    expect(confirm).to_be_hidden()
    assert sent == []

    galaxy.click()
    page.get_by_test_id("confirm-skip").check()
    page.get_by_test_id("confirm-send").click()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "2900")
    # Not asked again in this live; small gifts never ask.
    galaxy.click()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "1900")
    expect(confirm).to_be_hidden()
    page.get_by_test_id("gift-rose").click()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "1899")
    assert [frame["gift_id"] for frame in sent] == ["galaxy", "galaxy", "rose"]

    # Another live asks again.
    page.goto(f"{site.base_url}/?room={other_room}")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    page.get_by_test_id("gift-galaxy").click()
    expect(confirm).to_be_visible()
    page.get_by_test_id("confirm-cancel").click()
    assert api.coins(viewer) == 1899
    console.assert_clean()


def test_refusals_say_cost_balance_and_budget_left(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    viewer = unique("v")
    api.buy(viewer, "us_100")
    page = watch(browser, console, site.base_url, room_id, viewer, "Vera Quinn", PHONE_SIZE)
    open_tray(page, PHONE_SIZE)
    page.get_by_test_id("gift-lion").click()
    refusal = page.get_by_role("alert").filter(has_text="Lion")
    expect(refusal.get_by_test_id("toast-text")).to_have_text(
        "Not enough coins: Lion costs 29,999 and you have 100. You need 29,899 more."
    )
    # Its Buy coins opens the shop with the shortfall, and marks the package that covers it
    # when one does.
    refusal.get_by_test_id("toast-action").click()
    expect(page.get_by_test_id("shortfall")).to_have_text("You need 29,899 more coins for Lion.")
    page.get_by_test_id("shop-close").click()

    reply = api.http.put("/v1/wallet/limits", json={"daily_limit": 150}, headers=api.auth(viewer))
    assert reply.status_code == 200, reply.text
    hearts = page.get_by_test_id("gift-hand_hearts")
    hearts.click()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "0")
    api.buy(viewer, "us_550")
    page.reload()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    open_tray(page, PHONE_SIZE)
    hearts.click()
    refusal = page.get_by_role("alert").filter(has_text="budget")
    expect(refusal.get_by_test_id("toast-text")).to_have_text(
        "Over your daily budget: Hand Hearts costs 100 coins and 50 are left today of your 150."
        " You can change the budget in Daily budget."
    )
    assert api.coins(viewer) == 550
    console.assert_clean()


def test_the_region_picks_the_currency_and_is_remembered(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    viewer = unique("v")
    page = watch(browser, console, site.base_url, room_id, viewer, "Vera Quinn", PHONE_SIZE)
    region = page.get_by_test_id("region")
    page.get_by_test_id("menu-button").click()
    expect(region).to_have_value("US")
    region.select_option("GB")
    expect(page.get_by_role("status").filter(has_text="Coin prices are now in")).to_be_visible()
    assert api.me(viewer)["region"] == "GB"
    page.get_by_test_id("open-shop").click()
    expect(page.get_by_test_id("package-gb_100")).to_contain_text("£1.79")
    expect(page.get_by_test_id("shop-currency")).to_have_text("GBP")
    page.get_by_test_id("package-gb_100").click()
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("purchase-state")).to_have_attribute("data-state", "paid")
    assert api.coins(viewer) == 100
    # Another device of the same user starts in GB.
    other = watch(browser, console, site.base_url, room_id, viewer, "Vera Quinn", DESKTOP_SIZE)
    expect(other.get_by_test_id("region")).to_have_value("GB")
    console.assert_clean()


@BOTH_SIZES
def test_the_end_of_a_live_shows_as_such(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    _other, other_room = live_room(api, "Still live")
    viewer = unique("v")
    api.buy(viewer, "us_100")
    page = watch(browser, console, site.base_url, room_id, viewer, "Vera Quinn", size)
    open_tray(page, size)
    reset_layout_shift(page)
    assert api.end_room(creator, room_id).status_code == 200
    badge = page.get_by_test_id("live-badge")
    expect(badge).to_have_text("ENDED")
    ended = page.get_by_test_id("ended")
    expect(ended).to_be_visible()
    expect(ended.get_by_role("heading")).to_have_text("This LIVE has ended")
    offered = ended.locator("[data-testid^=join-]")
    expect(offered.first).to_be_visible()
    assert 1 <= offered.count() <= 5
    expect(ended.get_by_test_id(f"join-{room_id}")).to_have_count(0)
    expect(page.get_by_test_id("chat-input")).to_be_disabled()
    if size == PHONE_SIZE:
        expect(page.get_by_test_id("gift-sheet")).to_be_hidden()
    expect(page.get_by_test_id("gift-rose")).to_be_disabled()
    expect(page.get_by_test_id("toasts").get_by_text(re.compile("connection is back"))).to_have_count(0)
    assert_page_quality(page, console)

    # Opening an ended live: the same state at once (the socket closes 4410).
    late = watch_ended(browser, console, site.base_url, room_id, size)
    expect(late.get_by_test_id("live-badge")).to_have_text("ENDED")
    expect(late.get_by_test_id("ended")).to_be_visible()
    late.get_by_test_id("back-to-lobby").click()
    expect(late.get_by_test_id("lobby")).to_be_visible()
    late.get_by_test_id("lobby").get_by_test_id(f"join-{other_room}").click()
    expect(late.get_by_test_id("live-badge")).to_have_text("LIVE")
    expect(late.get_by_test_id("ended")).to_be_hidden()
    expect(late.get_by_test_id("room-title")).to_have_text("Still live")
    console.assert_clean()


def friend_page(browser: Browser, console: ConsoleWatch, base_url: str, room_id: str, friend: str) -> Page:
    return watch(browser, console, base_url, room_id, friend, "Bo Lee", DESKTOP_SIZE)


def watch_ended(
    browser: Browser, console: ConsoleWatch, base_url: str, room_id: str, size: dict[str, int]
) -> Page:
    return watch(browser, console, base_url, room_id, unique("v"), "Late Larry", size, state="closed")
