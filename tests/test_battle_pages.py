"""A LIVE battle on every page, in headless Chromium against a real server, at phone and desktop
size: invited from one creator's dashboard and accepted from the other's, the split score bar
on the viewer page and the overlay with the exact scores of the gifts to both rooms, each
side's top supporters and the countdown, the opponent's name opening the other live, a forfeit
(the inviter ends their LIVE) ending it at once with the winner moment and the result on both
dashboards; and the dashboard's refusals and answers as notices."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, FloatRect, Page, expect

from tests.browser import (
    BOTH_SIZES,
    DESKTOP_SIZE,
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
    screenshots,
    wait_until,
    watch,
)
from tests.support import Api, ServerProcess, unique
from tests.test_overlay_page import LOOKS

pytestmark = pytest.mark.browser

EN_DASH = "\N{EN DASH}"


def battle_of(api: Api, creator: str) -> dict[str, Any] | None:
    reply = api.http.get("/v1/me/battle", headers=api.auth(creator, "creator"))
    assert reply.status_code == 200, reply.text
    battle: dict[str, Any] | None = reply.json()["battle"]
    return battle


def get_battle(api: Api, creator: str, battle_id: str) -> dict[str, Any]:
    reply = api.http.get(f"/v1/battles/{battle_id}", headers=api.auth(creator, "creator"))
    assert reply.status_code == 200, reply.text
    battle: dict[str, Any] = reply.json()
    return battle


def gift(api: Api, fan: str, room_id: str, gift_id: str, count: int = 1) -> None:
    reply = api.gift(fan, room_id, gift_id, count)
    assert reply.status_code == 200, reply.text


def idle_dashboard(
    browser: Browser, console: ConsoleWatch, base_url: str, creator: str, size: dict[str, int]
) -> Page:
    """The creator's dashboard, live, its Battle card listing the other lives."""
    page = open_dashboard(browser, console, base_url, creator, size)
    expect(page.get_by_test_id("live-state")).to_have_attribute("data-live", "true")
    expect(page.get_by_test_id("battle-card")).to_have_attribute("data-mode", "idle")
    return page


def overlap(a: FloatRect, b: FloatRect) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def assert_bar(page: Page, left: tuple[str, int], right: tuple[str, int]) -> None:
    """The bar shows these names and scores, this room's side on the left."""
    bar = page.get_by_test_id("battle")
    expect(bar).to_be_visible()
    expect(bar.get_by_test_id("battle-name-left")).to_have_text(left[0])
    expect(bar.get_by_test_id("battle-name-right")).to_have_text(re.compile(rf"^{re.escape(right[0])}\b"))
    for where, (_name, score) in (("left", left), ("right", right)):
        expect(bar.get_by_test_id(f"battle-score-{where}")).to_have_attribute("data-score", str(score))
        expect(bar.get_by_test_id(f"battle-score-{where}")).to_have_text(f"{score:,}")


def assert_supporter(page: Page, where: str, user_id: str, name: str, coins: int) -> None:
    supporters = page.get_by_test_id(f"battle-top-{where}").get_by_test_id("battle-supporter")
    expect(supporters).to_have_count(1)
    expect(supporters).to_have_attribute("data-user-id", user_id)
    expect(supporters).to_have_attribute("data-coins", str(coins))
    expect(supporters).to_contain_text(name)
    expect(supporters).to_contain_text(f"{coins:,}")


@BOTH_SIZES
def test_a_battle_from_the_invitation_to_the_winner_on_every_page(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    carol, room_a = live_room(api, "Carol cooks", "Carol Ray")
    erin, room_b = live_room(api, "Erin sings", "Erin Fox")
    ann, bo = fan_with(api, 301, "Ann Lee"), fan_with(api, 1000, "Bo Park")

    viewer = watch(browser, console, site.base_url, room_a, unique("v"), "Vera Quinn", size)
    stayer = watch(browser, console, site.base_url, room_a, unique("v"), "Wes Stay", size)
    overlay = new_page(browser, console, "overlay", size)
    open_overlay(overlay, site.base_url, overlay_url(api, carol))
    overlay_b = new_page(browser, console, "overlay", size)
    open_overlay(overlay_b, site.base_url, overlay_url(api, erin))
    dash_a = idle_dashboard(browser, console, site.base_url, carol, size)
    dash_b = idle_dashboard(browser, console, site.base_url, erin, size)
    for page in (viewer, overlay, dash_a, dash_b):
        reset_layout_shift(page)
    expect(viewer.get_by_test_id("battle")).to_be_hidden()
    expect(overlay.get_by_test_id("battle")).to_be_hidden()

    # Carol invites Erin to a 1-minute battle; it waits for Erin, and lapses in 30 s.
    dash_a.get_by_test_id("battle-duration").select_option("60")
    dash_a.get_by_test_id(f"battle-invite-{erin}").click()
    expect(dash_a.get_by_test_id("battle-card")).to_have_attribute("data-mode", "sent")
    expect(dash_a.get_by_test_id("battle-invitation-text")).to_have_text(
        "Waiting for Erin Fox to accept your 1-minute battle…"
    )
    expect(dash_a.get_by_test_id("battle-lapse")).to_have_text(
        re.compile(r"^([1-9]|[12]\d|30) s left to answer\.$")
    )
    invited = battle_of(api, erin)
    assert invited is not None and invited["state"] == "invited" and invited["inviter"] == carol

    # Erin's dashboard sees it at its next poll, and accepts.
    expect(dash_b.get_by_test_id("battle-card")).to_have_attribute("data-mode", "received")
    expect(dash_b.get_by_test_id("battle-invitation-text")).to_have_text(
        "Carol Ray invites you to a 1-minute battle."
    )
    expect(dash_b.get_by_test_id("battle-cancel")).to_be_hidden()
    dash_b.get_by_test_id("battle-accept").click()
    expect(dash_b.get_by_test_id("battle-card")).to_have_attribute("data-mode", "running")
    running = battle_of(api, carol)
    assert running is not None and running["state"] == "running"
    battle_id = running["battle_id"]

    # Both rooms' pages show the bar at once; gifts to each room move its side, exactly.
    assert_bar(viewer, ("Carol Ray", 0), ("Erin Fox", 0))
    gift(api, ann, room_a, "corgi")  # 299
    gift(api, ann, room_a, "rose", 2)  # 2
    gift(api, bo, room_b, "galaxy")  # 1,000
    assert_bar(viewer, ("Carol Ray", 301), ("Erin Fox", 1000))
    assert_supporter(viewer, "left", ann, "Ann Lee", 301)
    assert_supporter(viewer, "right", bo, "Bo Park", 1000)
    sides = {side["creator"]: side for side in get_battle(api, carol, battle_id)["sides"]}
    assert (sides[carol]["score"], sides[erin]["score"]) == (301, 1000)
    assert sides[carol]["top"] == [{"user_id": ann, "name": "Ann Lee", "coins": 301}]
    # The countdown: at most the minute, counting down.
    countdown = viewer.get_by_test_id("battle-countdown")
    expect(countdown).to_have_text(re.compile(r"^(1:00|0:[0-5]\d)$"))
    first = int(countdown.get_attribute("data-ms-left") or "0")
    assert 0 < first <= 60_000
    wait_until(viewer, lambda: int(countdown.get_attribute("data-ms-left") or "0") < first - 1000)
    # The bar floats over the stage: it covers neither the chat, the gift tray nor the pills
    # of the stage (they slide down under it).
    bar_box = viewer.get_by_test_id("battle").bounding_box()
    assert bar_box is not None
    for other in ("chat-form", "chat-list", "open-gifts", "gift-tray", "goal", "leave-room", "follow"):
        box = viewer.get_by_test_id(other).bounding_box()
        assert box is None or not overlap(box, bar_box), (other, box, bar_box)

    # The overlays show the same bar, on opaque pills, legible at the stream's scale.
    assert_bar(overlay, ("Carol Ray", 301), ("Erin Fox", 1000))
    assert_bar(overlay_b, ("Erin Fox", 1000), ("Carol Ray", 301))
    for look in overlay.evaluate(LOOKS, ["battle"]):
        assert look["alpha"] >= 0.85, look
        assert look["smallest"] >= 12, look
        assert look["inside"], look
    # Each dashboard follows the running score.
    expect(dash_a.get_by_test_id("battle-card")).to_have_attribute("data-mode", "running")
    expect(dash_a.get_by_test_id("battle-score-left")).to_have_attribute("data-score", "301")
    expect(dash_b.get_by_test_id("battle-score-left")).to_have_attribute("data-score", "1000")
    for page in (viewer, overlay, dash_a, dash_b):
        assert_page_quality(page, console)
    viewer.screenshot(path=screenshots() / ("battle-phone.png" if size == PHONE_SIZE else "battle.png"))

    # The opponent's name opens Erin's live, where the bar has Erin's side on the left.
    viewer.get_by_test_id("battle-opponent").click()
    expect(viewer).to_have_url(re.compile(rf"\?room={room_b}$"))
    expect(viewer.get_by_test_id("room-title")).to_have_text("Erin sings")
    expect(viewer.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    assert_bar(viewer, ("Erin Fox", 1000), ("Carol Ray", 301))
    reset_layout_shift(viewer)

    # Carol ends her LIVE: she forfeits, and the battle ends at once, Erin the winner.
    dash_a.get_by_test_id("end-live").click()
    dash_a.get_by_test_id("end-confirm").click()
    expect(viewer.get_by_test_id("moment-name")).to_have_text("Erin Fox wins!")
    expect(viewer.get_by_test_id("moment-gift")).to_have_text(f"Carol Ray 301 {EN_DASH} 1,000 Erin Fox")
    expect(viewer.get_by_test_id("moment-detail")).to_have_text(
        [
            "Carol Ray ended their LIVE",
            "MVP for Carol Ray: Ann Lee (301)",
            "MVP for Erin Fox: Bo Park (1,000)",
        ]
    )
    bar = viewer.get_by_test_id("battle")
    expect(bar).to_have_attribute("data-state", "ended")
    expect(bar).to_have_attribute("data-winner", erin)
    expect(bar.get_by_test_id("battle-win-left")).to_be_visible()
    expect(bar.get_by_test_id("battle-win-right")).to_be_hidden()
    final = get_battle(api, erin, battle_id)
    assert (final["state"], final["winner"], final["forfeit"]) == ("ended", erin, carol)
    assert battle_of(api, erin) is None
    assert_page_quality(viewer, console)
    # Both overlays play the winner in their alert queue: Carol's room gets battle_end before
    # its room_end. Carol's viewers, whose live is over, see the result too.
    expect(overlay_b.get_by_test_id("moment-name")).to_have_text("Erin Fox wins!")
    expect(overlay.get_by_test_id("moment-name")).to_have_text("Erin Fox wins!")
    expect(stayer.get_by_test_id("ended")).to_be_visible()
    expect(stayer.get_by_test_id("moment-name")).to_have_text("Erin Fox wins!")
    expect(stayer.get_by_test_id("battle")).to_have_attribute("data-winner", erin)
    expect(overlay.get_by_test_id("battle")).to_have_attribute("data-winner", erin)

    # The dashboards say who won, with the scores.
    expect(dash_b.get_by_test_id("battle-result-text")).to_have_text("You won!")
    expect(dash_b.get_by_test_id("battle-result-mine")).to_have_text("1,000")
    expect(dash_b.get_by_test_id("battle-result-theirs")).to_have_text("301")
    expect(dash_a.get_by_test_id("battle-result-text")).to_have_text("Erin Fox won")
    expect(dash_a.get_by_test_id("battle-result-mine")).to_have_text("301")
    expect(dash_a.get_by_test_id("battle-card")).to_have_attribute("data-mode", "offline")
    for page in (dash_a, dash_b):
        assert_page_quality(page, console)

    # The result stays about 10 s, then the bar goes.
    expect(bar).to_be_hidden(timeout=15_000)
    console.assert_clean()


def toast_text(page: Page, kind: str) -> Any:
    return page.locator(f'[data-testid="toast"][data-kind="{kind}"]').get_by_test_id("toast-text")


def test_the_dashboard_answers_declines_cancels_and_says_why_it_was_refused(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    carol, _room_a = live_room(api, "Carol cooks", "Carol Ray")
    erin, _room_b = live_room(api, "Erin sings", "Erin Fox")
    dave, _room_c = live_room(api, "Dave draws", "Dave Kim")
    dash_a = idle_dashboard(browser, console, site.base_url, carol, DESKTOP_SIZE)
    dash_b = idle_dashboard(browser, console, site.base_url, erin, DESKTOP_SIZE)
    dash_c = idle_dashboard(browser, console, site.base_url, dave, DESKTOP_SIZE)
    # Everyone else live is listed, never oneself.
    creators = dash_a.get_by_test_id("battle-creators")
    expect(creators.get_by_test_id(f"battle-invite-{erin}")).to_be_visible()
    expect(creators.get_by_test_id(f"battle-invite-{dave}")).to_be_visible()
    expect(creators.get_by_test_id(f"battle-invite-{carol}")).to_have_count(0)
    expect(creators.locator(f'[data-creator="{erin}"]')).to_contain_text("Erin Fox")
    for page in (dash_a, dash_b, dash_c):
        reset_layout_shift(page)

    # Carol invites Erin (5 minutes, the default); Dave's invitation to Erin is refused.
    dash_a.get_by_test_id(f"battle-invite-{erin}").click()
    expect(dash_a.get_by_test_id("battle-invitation-text")).to_have_text(
        "Waiting for Erin Fox to accept your 5-minute battle…"
    )
    dash_c.get_by_test_id(f"battle-invite-{erin}").click()
    expect(toast_text(dash_c, "error")).to_have_text(
        "You or Erin Fox already have a battle or an open invitation. Try again when it is over."
    )
    expect(dash_c.get_by_test_id("battle-card")).to_have_attribute("data-mode", "idle")

    # Erin declines: both dashboards say so, and Carol can invite again.
    expect(dash_b.get_by_test_id("battle-accept")).to_be_visible()
    dash_b.get_by_test_id("battle-decline").click()
    expect(toast_text(dash_b, "ok")).to_have_text("You declined Carol Ray's battle.")
    expect(dash_b.get_by_test_id("battle-card")).to_have_attribute("data-mode", "idle")
    expect(toast_text(dash_a, "info")).to_have_text("Erin Fox declined your battle.")
    expect(dash_a.get_by_test_id("battle-card")).to_have_attribute("data-mode", "idle")
    assert battle_of(api, carol) is None and battle_of(api, erin) is None

    # Carol invites Dave and cancels: Dave's dashboard hears it was cancelled.
    dash_a.get_by_test_id(f"battle-invite-{dave}").click()
    expect(dash_c.get_by_test_id("battle-card")).to_have_attribute("data-mode", "received")
    dash_a.get_by_test_id("battle-cancel").click()
    expect(toast_text(dash_a, "ok")).to_have_text("Invitation cancelled.")
    expect(toast_text(dash_c, "info")).to_have_text("Carol Ray cancelled the invitation.")
    expect(dash_c.get_by_test_id("battle-card")).to_have_attribute("data-mode", "idle")
    assert battle_of(api, dave) is None
    for page in (dash_a, dash_b, dash_c):
        assert_page_quality(page, console)
