"""The streamer's overlay in headless Chromium against a real server: alert tiers in one queue
(a grand moment after a small gift's alert, never two at once), its URL parameters (position,
scale, min_coins, widgets, sound, a notice for values it does not understand), a regenerated
link that stops an open overlay for good, and its look at phone, desktop and OBS sizes over a
busy background."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, FloatRect, Page, WebSocket, expect

from tests.browser import (
    CHECKERBOARD,
    DESKTOP_SIZE,
    OVERLAY_SIZE,
    PHONE_SIZE,
    TIMES,
    ConsoleWatch,
    assert_page_quality,
    fan_with,
    live_room,
    new_page,
    open_overlay,
    overlay_url,
    paint,
    reset_layout_shift,
    screenshots,
    set_goal,
)
from tests.support import Api, ServerProcess, unique

pytestmark = pytest.mark.browser

REVOKED_TEXT = "This overlay link was replaced. Copy the new link from your creator dashboard."
# Records, in order, each alert and each moment as it appears, and the most of them ever on
# screen together, from the first paint on.
SHOWN_WATCH = """
(() => {
  const shown = { log: [], most: 0 };
  window.__shown = shown;
  let alertWasOn = false;
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === 1 && node.dataset.testid === "moment") {
          const name = node.querySelector('[data-testid="moment-name"]').textContent;
          shown.log.push(`moment:${node.dataset.tier}:${name}`);
        }
      }
    }
    const alert = document.querySelector('[data-testid="alert"]');
    const alertOn = Boolean(alert) && !alert.hidden;
    if (alertOn && !alertWasOn) {
      const gift = alert.querySelector('[data-testid="alert-gift"]').textContent;
      const name = alert.querySelector('[data-testid="alert-name"]').textContent;
      shown.log.push(`alert:${gift || alert.dataset.kind}:${name}`);
    }
    alertWasOn = alertOn;
    const moments = document.querySelectorAll('[data-testid="moment"]').length;
    shown.most = Math.max(shown.most, moments + (alertOn ? 1 : 0));
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["hidden"] });
})();
"""
# Counts the AudioContexts the page makes and the tones it plays.
AUDIO_WATCH = """
(() => {
  const counts = { contexts: 0, tones: 0 };
  window.__audio = counts;
  const Original = window.AudioContext;
  window.AudioContext = class extends Original {
    constructor(...args) { super(...args); counts.contexts += 1; }
  };
  const create = Original.prototype.createOscillator;
  Original.prototype.createOscillator = function () { counts.tones += 1; return create.call(this); };
})();
"""
# A bright, detailed background, as a busy game or camera scene under the overlay.
BUSY_BACKGROUND = (
    "repeating-linear-gradient(45deg, #fff 0 18px, #ffe600 18px 36px, #00e5ff 36px 54px),"
    " linear-gradient(90deg, #ff3d00, #fff, #00c853)"
)


def overlay(
    browser: Browser, console: ConsoleWatch, size: dict[str, int], *scripts: str, **context: Any
) -> Page:
    page = new_page(browser, console, "overlay", size, **context)
    page.add_init_script(SHOWN_WATCH)
    for script in scripts:
        page.add_init_script(script)
    return page


def shown(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("({ log: [...window.__shown.log], most: window.__shown.most })")
    return result


def gift(api: Api, fan: str, room_id: str, gift_id: str, count: int = 1) -> None:
    reply = api.gift(fan, room_id, gift_id, count)
    assert reply.status_code == 200, reply.text


def test_a_grand_moment_plays_after_a_small_gifts_alert_and_never_over_it(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    name = "Vera Quinn"
    fan = fan_with(api, 29_999 + 3, name)
    page = overlay(browser, console, OVERLAY_SIZE)
    open_overlay(page, site.base_url, overlay_url(api, creator))
    paint(page, CHECKERBOARD)

    # Three Roses make a combo; the Lion closes it (one combo_end), then is a gift of its own.
    gift(api, fan, room_id, "rose", 3)
    expect(page.get_by_test_id("live-combo-count")).to_have_text(f"{TIMES}3")
    gift(api, fan, room_id, "lion")
    expect(page.get_by_test_id("alert-count")).to_have_text(f"{TIMES}3")
    moment = page.locator('[data-testid="moment"][data-tier="3"]')
    expect(moment.get_by_test_id("moment-name")).to_have_text(name, timeout=8000)
    expect(moment.get_by_test_id("moment-gift")).to_have_text("sent Lion")
    # Its entrance (the first 14 % of 8 s) is over: the moment at its fullest.
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"moment\"]').getAnimations()[0].currentTime > 1500"
    )
    page.screenshot(path=screenshots() / "overlay.png")
    expect(page.get_by_test_id("alert")).to_be_hidden()
    expect(moment).to_have_count(0, timeout=10_000)
    assert shown(page) == {"log": [f"alert:Rose:{name}", f"moment:3:{name}"], "most": 1}
    console.assert_clean()


def test_a_storm_of_small_alerts_never_pushes_a_big_gift_out_of_the_queue(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    big = fan_with(api, 2 * 29_999, "Leo Grand")
    small = [fan_with(api, 19 * 299) for _ in range(3)]
    page = overlay(browser, console, DESKTOP_SIZE)
    open_overlay(page, site.base_url, overlay_url(api, creator))
    gift(api, big, room_id, "lion")
    expect(page.locator('[data-testid="moment"][data-tier="3"]')).to_have_count(1)
    # While the first Lion's moment plays, the second waits, then 57 Corgis (one alert each)
    # overflow the queue of 50.
    gift(api, big, room_id, "lion")
    for fan in small:
        for _ in range(19):
            gift(api, fan, room_id, "corgi")
    assert shown(page)["log"] == ["moment:3:Leo Grand"], "the storm came after the first moment"
    page.wait_for_function("() => window.__shown.log.length >= 3", timeout=20_000)
    log = shown(page)["log"]
    assert log[:2] == ["moment:3:Leo Grand", "moment:3:Leo Grand"]
    assert log[2].startswith("alert:Corgi:")
    console.assert_clean()


def test_min_coins_shows_only_gifts_worth_it(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    fan = fan_with(api, 299 + 300 + 1000)
    name = fan.capitalize()
    page = overlay(browser, console, DESKTOP_SIZE)
    open_overlay(page, site.base_url, overlay_url(api, creator) + "?min_coins=300")

    gift(api, fan, room_id, "corgi")  # 299 coins: below the minimum, no alert
    gift(api, fan, room_id, "rose", 300)  # a combo worth 300 coins: an alert
    gift(api, fan, room_id, "galaxy")  # 1,000 coins, tier 2: a moment
    expect(page.locator('[data-testid="moment"][data-tier="2"]')).to_have_count(1, timeout=8000)
    assert shown(page) == {"log": [f"alert:Rose:{name}", f"moment:2:{name}"], "most": 1}
    console.assert_clean()


def settled(page: Page, test_id: str) -> None:
    """Wait until the element's entrance animation is over."""
    page.get_by_test_id(test_id).evaluate("e => Promise.all(e.getAnimations().map((a) => a.finished))")


def test_with_reduced_motion_alerts_and_moments_only_fade(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    fan = fan_with(api, 299 + 1000)
    page = overlay(browser, console, DESKTOP_SIZE, reduced_motion="reduce")
    open_overlay(page, site.base_url, overlay_url(api, creator))
    gift(api, fan, room_id, "corgi")
    gift(api, fan, room_id, "galaxy")
    expect(page.get_by_test_id("alert-gift")).to_have_text("Corgi")
    assert page.get_by_test_id("alert").evaluate("e => e.getAnimations().length") == 0
    moment = page.locator('[data-testid="moment"][data-tier="2"]')
    expect(moment).to_have_count(1, timeout=8000)
    # What the moment's animations change, besides their timing.
    animated = moment.evaluate(
        "m => m.getAnimations({ subtree: true }).flatMap((a) => a.effect.getKeyframes())"
        ".flatMap((k) => Object.keys(k))"
    )
    assert set(animated) - {"offset", "easing", "composite", "computedOffset"} == {"opacity"}
    console.assert_clean()


def box(page: Page, test_id: str) -> FloatRect:
    """Where the element is once its entrance animation is over."""
    settled(page, test_id)
    found = page.get_by_test_id(test_id).bounding_box()
    assert found is not None, f"{test_id} is not on screen"
    return found


def test_position_scale_and_widgets_change_what_shows_and_where(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    set_goal(api, creator, room_id, 1000)
    fan = fan_with(api, 400)
    url = overlay_url(api, creator)
    plain = overlay(browser, console, DESKTOP_SIZE)
    open_overlay(plain, site.base_url, url)
    custom = overlay(browser, console, DESKTOP_SIZE)
    open_overlay(custom, site.base_url, url + "?position=bottom-right&scale=2&widgets=alerts,goal")

    gift(api, fan, room_id, "rose", 2)
    expect(plain.get_by_test_id("live-combo")).to_be_visible()
    gift(api, fan, room_id, "corgi")
    for page in (plain, custom):
        expect(page.get_by_test_id("alert-gift")).to_have_text("Rose")
        expect(page.get_by_test_id("goal-text")).to_have_text("Goal: 301 / 1,000 coins")
    # The stage is 1920 wide, scaled to 1280: alerts keep 60 px from the sides (40 on screen)
    # and end 200 px above the bottom (133 on screen).
    default, moved = box(plain, "alert"), box(custom, "alert")
    assert abs(default["x"] + default["width"] / 2 - 640) <= 1
    assert abs(default["y"] - 80 * 2 / 3) <= 1
    assert abs(moved["x"] + moved["width"] - (1280 - 40)) <= 1
    assert abs(moved["y"] + moved["height"] - (800 - 200 * 2 / 3)) <= 1
    assert abs(moved["width"] - 2 * default["width"]) <= 2
    assert abs(moved["height"] - 2 * default["height"]) <= 2
    # widgets=alerts,goal: no top gifters and no combos, the goal stays.
    expect(plain.get_by_test_id("top-gifters-panel")).to_be_visible()
    expect(custom.get_by_test_id("top-gifters-panel")).to_be_hidden()
    expect(custom.get_by_test_id("live-combos")).to_be_hidden()
    expect(custom.get_by_test_id("goal")).to_be_visible()
    assert custom.get_by_test_id("live-combo").count() == 0
    console.assert_clean()


def test_values_it_does_not_understand_fall_back_with_a_notice_that_goes(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    fan = fan_with(api, 299)
    page = overlay(browser, console, DESKTOP_SIZE, AUDIO_WATCH)
    open_overlay(
        page, site.base_url, overlay_url(api, creator) + "?position=middle&scale=9&min_coins=lots&sound=yes"
    )
    notice = page.get_by_test_id("toast")
    expect(notice).to_have_count(1)
    for words in (
        "position=middle (using top)",
        "scale=9 (using 1)",
        "min_coins=lots (using 1)",
        "sound=yes (using off)",
    ):
        expect(notice).to_contain_text(words)
    expect(notice).to_be_hidden(timeout=6000)
    gift(api, fan, room_id, "corgi")
    expect(page.get_by_test_id("alert-gift")).to_have_text("Corgi")
    alert = box(page, "alert")
    assert abs(alert["x"] + alert["width"] / 2 - 640) <= 1 and abs(alert["y"] - 80 * 2 / 3) <= 1
    assert page.evaluate("window.__audio.contexts") == 0
    console.assert_clean()


@pytest.mark.parametrize("asked", [True, False], ids=["sound", "silent"])
def test_sound_only_when_asked_a_chime_richer_by_tier(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, asked: bool
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    fan = fan_with(api, 299 + 1000)
    page = overlay(browser, console, DESKTOP_SIZE, AUDIO_WATCH)
    open_overlay(page, site.base_url, overlay_url(api, creator) + ("?sound=1" if asked else ""))
    gift(api, fan, room_id, "corgi")
    gift(api, fan, room_id, "galaxy")
    expect(page.get_by_test_id("alert-gift")).to_have_text("Corgi")
    expect(page.locator('[data-testid="moment"][data-tier="2"]')).to_have_count(1, timeout=8000)
    # Tier 1 is two notes, tier 2 three; without ?sound=1 there is no AudioContext at all.
    expected = {"contexts": 1, "tones": 2 + 3} if asked else {"contexts": 0, "tones": 0}
    assert page.evaluate("window.__audio") == expected
    console.assert_clean()


def test_regenerating_the_link_stops_an_open_overlay_for_good(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    fan = fan_with(api, 299 * 2)
    old_url = overlay_url(api, creator)
    page = overlay(browser, console, DESKTOP_SIZE)
    sockets: list[WebSocket] = []
    page.on("websocket", lambda socket: sockets.append(socket))
    open_overlay(page, site.base_url, old_url)
    assert len(sockets) == 1

    reply = api.http.post("/v1/creator/overlay/regenerate", headers=api.auth(creator, "creator"))
    assert reply.status_code == 200, reply.text
    new_url: str = reply.json()["url"]
    assert new_url != old_url
    status = page.get_by_test_id("connection-state")
    expect(status).to_have_attribute("data-state", "revoked")
    expect(status).to_have_text(REVOKED_TEXT)
    expect(status).to_be_visible()

    # The new link works; by the time its overlay shows the gift, the old one would have too.
    fresh = overlay(browser, console, DESKTOP_SIZE)
    open_overlay(fresh, site.base_url, new_url)
    gift(api, fan, room_id, "corgi")
    expect(fresh.get_by_test_id("alert-gift")).to_have_text("Corgi")
    assert shown(page)["log"] == []
    assert len(sockets) == 1
    expect(status).to_have_attribute("data-state", "revoked")

    # Opened again, the old link says the same at once and opens no socket. (The browser
    # logs the 404 of GET /v1/overlay/{old token} that tells the page so.)
    console.tolerate = [re.compile(r"^Failed to load resource: the server responded with a status of 404")]
    again = overlay(browser, console, PHONE_SIZE)
    again_sockets: list[WebSocket] = []
    again.on("websocket", lambda socket: again_sockets.append(socket))
    again.goto(site.base_url + old_url)
    expect(again.get_by_test_id("connection-state")).to_have_attribute("data-state", "revoked")
    expect(again.get_by_test_id("connection-state")).to_have_text(REVOKED_TEXT)
    assert again_sockets == []
    assert_page_quality(again, console)


# For each of these elements: how opaque its background is, its smallest text in screen
# pixels (the stage is scaled to the window), and whether it is wholly inside the window.
LOOKS = """(ids) => {
  const stage = document.querySelector('[data-testid="overlay-stage"]');
  const scale = stage.getBoundingClientRect().width / stage.offsetWidth;
  return ids.map((id) => {
    const element = document.querySelector(`[data-testid="${id}"]`);
    const style = getComputedStyle(element);
    const channels = style.backgroundColor.match(/[\\d.]+/g) || [];
    const alpha = style.backgroundImage !== "none" ? 1 : channels.length === 4 ? Number(channels[3]) : 1;
    const texts = [element, ...element.querySelectorAll("*")]
      .filter((e) => e.childElementCount === 0 && e.textContent.trim());
    const smallest = Math.min(...texts.map((e) => parseFloat(getComputedStyle(e).fontSize) * scale));
    const box = element.getBoundingClientRect();
    const inside = box.left >= 0 && box.right <= innerWidth && box.bottom <= innerHeight;
    return { id, alpha, smallest, inside };
  });
}"""
# What carries text on the overlay, and each must sit on an (almost) opaque background.
TEXT_HOLDERS = ["alert", "live-combo", "top-gifters-panel", "goal-text", "chat-widget"]


@pytest.mark.parametrize("size", [PHONE_SIZE, DESKTOP_SIZE, OVERLAY_SIZE], ids=["phone", "desktop", "obs"])
def test_it_fits_and_stays_legible_on_a_busy_background(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    set_goal(api, creator, room_id, 1000)
    fan = fan_with(api, 400, "Nia Park")
    page = overlay(browser, console, size)
    open_overlay(page, site.base_url, overlay_url(api, creator) + "?chat=1")
    paint(page, BUSY_BACKGROUND)
    reset_layout_shift(page)
    chat = api.http.post(
        f"/v1/rooms/{room_id}/chat",
        json={"text": "what a stream!", "client_id": "m-1"},
        headers=api.auth(fan),
    )
    assert chat.status_code == 201, chat.text
    gift(api, fan, room_id, "corgi")
    gift(api, fan, room_id, "rose", 4)
    expect(page.get_by_test_id("alert-gift")).to_have_text("Corgi")
    expect(page.get_by_test_id("live-combo-count")).to_have_text(f"{TIMES}4")
    expect(page.get_by_test_id("chat-list")).to_contain_text("what a stream!")
    expect(page.get_by_test_id("top-gifters-panel")).to_be_visible()
    if size == PHONE_SIZE:
        settled(page, "alert")
        paint(page, CHECKERBOARD)
        page.screenshot(path=screenshots() / "overlay-phone.png")
        paint(page, BUSY_BACKGROUND)

    looks = page.evaluate(LOOKS, TEXT_HOLDERS)
    for look in looks:
        assert look["alpha"] >= 0.85, look
        assert look["smallest"] >= 12, look
        assert look["inside"], look
    assert_page_quality(page, console)


def test_the_chat_widget_shows_no_empty_bar_before_the_first_message(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    viewer = unique("v")
    page = overlay(browser, console, DESKTOP_SIZE)
    open_overlay(page, site.base_url, overlay_url(api, creator) + "?chat=1")
    widget = page.get_by_test_id("chat-widget")
    expect(widget).to_be_hidden()
    reply = api.http.post(
        f"/v1/rooms/{room_id}/chat", json={"text": "first!", "client_id": "m-1"}, headers=api.auth(viewer)
    )
    assert reply.status_code == 201, reply.text
    expect(widget).to_be_visible()
    expect(widget).to_contain_text("first!")
    console.assert_clean()
