"""The browser clients in client_demo/, end to end in headless Chromium on a real server.

A viewer buys coins through the sandbox checkout and taps a gift five times; the streamer's
overlay shows the finished combo with the viewer's name and the count 5; the balance on screen, the
wallet and the creator's pending diamonds agree. The creator's test alert reaches the
overlay and no viewer, and the overlay rides out a server restart. Any console error fails.
overlay-social.png in docs/screenshots/ is taken here; each page's own test file takes its
other screenshots (tests/test_viewer_page.py, test_creator_page.py, test_overlay_page.py).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, Route, WebSocketRoute, expect

from tests.browser import (
    BOTH_SIZES,
    CHECKERBOARD,
    DESKTOP_SIZE,
    OVERLAY_SIZE,
    PHONE_SIZE,
    RESTART_NOISE,
    TIMES,
    ConsoleWatch,
    assert_fits,
    live_room,
    message,
    named_token,
    new_page,
    open_dashboard,
    open_overlay,
    overlay_url,
    paint,
    record_sent,
    say,
    screenshots,
    set_goal,
    sign_in,
    wait_until,
    watch,
)
from tests.support import Api, ServerProcess, unique

pytestmark = pytest.mark.browser

SHARE = 0.5


def test_a_viewers_combo_shows_on_the_overlay_and_the_books_match(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    viewer, name = unique("v"), "Vera Quinn"
    set_goal(api, creator, room_id, 100)

    overlay = new_page(browser, console, "overlay", OVERLAY_SIZE)
    open_overlay(overlay, site.base_url, overlay_url(api, creator))

    page = new_page(browser, console, "viewer", DESKTOP_SIZE)
    page.goto(site.base_url + "/")
    sign_in(page, viewer, name)
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "0")
    page.get_by_test_id(f"join-{room_id}").click()
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")

    # Buy 100 coins: the order is paid through the sandbox's signed webhook.
    page.get_by_test_id("open-shop").click()
    page.get_by_test_id("package-us_100").click()
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("purchase-state")).to_have_attribute("data-state", "paid")
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "100")
    page.get_by_test_id("shop").get_by_role("button", name="Close").click()

    # Five quick taps of a 5-coin gift: five gifts of count 1, one combo.
    gift = page.get_by_test_id("gift-finger_heart")
    for _ in range(5):
        gift.click()
    expect(page.get_by_test_id("combo-count")).to_have_text(f"{TIMES}5")
    expect(overlay.get_by_test_id("live-combo-count")).to_have_text(f"{TIMES}5")

    # The combo ends after the window: one alert, with the viewer's name and the count.
    alert = overlay.get_by_test_id("alert")
    expect(alert).to_be_visible()
    expect(overlay.get_by_test_id("alert-name")).to_have_text(name)
    expect(overlay.get_by_test_id("alert-count")).to_have_text(f"{TIMES}5")
    expect(overlay.get_by_test_id("alert-gift")).to_have_text("Finger Heart")
    expect(overlay.get_by_test_id("top-gifters")).to_contain_text(name)
    expect(overlay.get_by_test_id("goal-text")).to_have_text("Goal: 25 / 100 coins")
    # Alerts last at most 4 s.
    expect(alert).to_be_hidden(timeout=4500)
    # The viewer's chat says it once for the whole combo.
    expect(page.get_by_test_id("notice-gift")).to_have_count(1)
    expect(page.get_by_test_id("notice-gift")).to_have_text(f"{name} sent Finger Heart {TIMES}5")

    # The books: the balance on screen is the wallet's, and the creator earned
    # floor(0.5 * 5) = 2 diamonds for each of the five gifts.
    expected_coins = 100 - 5 * 5
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", str(expected_coins))
    assert api.coins(viewer) == expected_coins
    expected_diamonds = 5 * int(5 * SHARE)
    assert api.earnings(creator)["pending"] == expected_diamonds

    dashboard = open_dashboard(browser, console, site.base_url, creator)
    expect(dashboard.get_by_test_id("pending")).to_have_attribute("data-diamonds", str(expected_diamonds))
    expect(dashboard.get_by_test_id("live-state")).to_have_attribute("data-live", "true")
    console.assert_clean()


def test_the_test_alert_shows_on_the_overlay_only(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api)
    viewer = unique("v")
    api.buy(viewer)
    for _ in range(3):
        assert api.gift(viewer, room_id, "hand_hearts").status_code == 200

    overlay = new_page(browser, console, "overlay", OVERLAY_SIZE)
    open_overlay(overlay, site.base_url, overlay_url(api, creator))
    page = watch(browser, console, site.base_url, room_id, viewer, "Theo", DESKTOP_SIZE)

    dashboard = open_dashboard(browser, console, site.base_url, creator)
    expect(dashboard.get_by_test_id("pending")).to_have_attribute("data-diamonds", "150")
    expect(dashboard.get_by_test_id("pending-value")).to_have_text("$0.75")
    dashboard.get_by_test_id("reveal-overlay").click()
    expect(dashboard.get_by_test_id("overlay-url")).to_have_text(re.compile(r"/overlay/[A-Za-z0-9_-]+$"))
    dashboard.get_by_test_id("test-alert").click()
    expect(dashboard.get_by_test_id("overlay-state")).to_contain_text("Test alert sent")

    expect(overlay.get_by_test_id("alert-name")).to_have_text("Test Viewer")
    expect(overlay.get_by_test_id("alert-count")).to_have_text(f"{TIMES}5")
    # Viewers never get it: nothing about it reaches the viewer page.
    page.wait_for_timeout(500)
    expect(page.get_by_text("Test Viewer")).to_have_count(0)
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


# Markup in a display name (at most 64 characters) and in chat texts: each must show as the
# characters it is and run nothing.
XSS_NAME = '<img src=x onerror="window.__xss=1;alert(1)">'
XSS_TEXTS = (
    "<script>window.__xss=2;alert(2)</script>",
    "<img src=x onerror=alert(3)>",
    '"><svg onload=alert(4)><b>bold</b>',
)


def joined(name: str) -> re.Pattern[str]:
    """The joins line naming ``name`` last: alone, or after others who joined in the same
    presence interval ("Ann Fox and Bo Lee joined")."""
    return re.compile(rf"^\s*(.+ and )?{re.escape(name)} joined\s*$")


@BOTH_SIZES
def test_two_viewers_chat_like_follow_and_share(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    _creator, room_id = live_room(api)
    ann_id, bo_id = unique("v"), unique("v")
    # Each like frame Ann's page sends, with the time it left.
    frames: list[tuple[float, int]] = []

    def record_like(frame: dict[str, Any]) -> None:
        frames.append((time.monotonic(), frame["count"]))

    ann = watch(
        browser,
        console,
        site.base_url,
        room_id,
        ann_id,
        "Ann Fox",
        size,
        lambda page: record_sent(page, "like", record_like),
    )
    bo = watch(browser, console, site.base_url, room_id, bo_id, "Bo Lee", size)
    # Bo's arrival, briefly, on Ann's stage: with Ann's own when both fell in one presence
    # interval, as joins merge (PROTOCOL.md, Presence).
    expect(ann.get_by_test_id("joins")).to_have_text(joined("Bo Lee"))

    say(ann, "hello from Ann")
    expect(message(bo, "hello from Ann").get_by_test_id("chat-name")).to_have_text("Ann Fox")
    expect(message(ann, "hello from Ann")).to_be_visible()
    expect(ann.get_by_test_id("chat-input")).to_have_value("")
    say(bo, "hi Ann!")
    expect(message(ann, "hi Ann!").get_by_test_id("chat-name")).to_have_text("Bo Lee")

    # Seven quick taps on the stage: hearts at once, the likes in batches of 1-15 a second.
    stage = ann.get_by_test_id("stage")
    for tap in range(7):
        stage.click(position={"x": 60 + 20 * tap, "y": 120})
    expect(ann.get_by_test_id("heart-layer").locator(".heart").first).to_be_attached()
    expect(ann.get_by_test_id("likes")).to_have_attribute("data-likes", "7")
    expect(bo.get_by_test_id("likes")).to_have_attribute("data-likes", "7")
    assert sum(count for _, count in frames) == 7
    assert all(1 <= count <= 15 for _, count in frames)
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(frames)]
    assert all(gap >= 0.9 for gap in gaps), gaps

    # Follow, then unfollow: both pages follow the count; Bo's chat says Ann followed.
    follow = ann.get_by_test_id("follow")
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "true")
    expect(ann.get_by_test_id("followers")).to_have_attribute("data-followers", "1")
    expect(bo.get_by_test_id("followers")).to_have_attribute("data-followers", "1")
    expect(bo.get_by_test_id("notice-follow")).to_contain_text("Ann Fox followed")
    follow.click()
    expect(follow).to_have_attribute("aria-pressed", "false")
    expect(bo.get_by_test_id("followers")).to_have_attribute("data-followers", "0")

    bo.get_by_test_id("share").click()
    expect(bo.get_by_test_id("share-state")).to_have_attribute("data-state", "shared")
    expect(ann.get_by_test_id("notice-share")).to_contain_text("Bo Lee shared the live")

    for page in (ann, bo):
        assert_fits(page)
    console.assert_clean()


def test_a_message_resent_after_a_dropped_connection_is_posted_once(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, ann_id, bo_id = unique("c"), unique("v"), unique("v")
    room_id = api.open_room(creator, "Resend")
    bo = watch(browser, console, site.base_url, room_id, bo_id, "Bo Lee", DESKTOP_SIZE)
    sent: list[dict[str, Any]] = []
    acks: list[dict[str, Any]] = []

    def lose_the_first_ack(socket: WebSocketRoute) -> None:
        # Between page and server: the first chat_ack never reaches the page.
        server = socket.connect_to_server()

        def from_page(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame["type"] == "chat":
                sent.append(frame)
            server.send(payload)

        def from_server(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame["type"] == "chat_ack":
                acks.append(frame)
                if len(acks) == 1:
                    return
            socket.send(payload)

        socket.on_message(from_page)
        server.on_message(from_server)

    def route(page: Page) -> None:
        page.route_web_socket(re.compile(r"/ws(\?|$)"), lose_the_first_ack)

    ann = watch(browser, console, site.base_url, room_id, ann_id, "Ann Fox", PHONE_SIZE, route)
    say(ann, "said once")
    wait_until(ann, lambda: len(acks) == 1)
    # ...and then the connection drops (the server restarts): the page resends the message
    # with its client_id.
    console.tolerate = RESTART_NOISE
    site.stop()
    expect(ann.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")
    site.start()
    wait_until(ann, lambda: len(acks) == 2)
    expect(ann.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(bo.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    console.tolerate = []
    assert [frame["client_id"] for frame in sent] == [sent[0]["client_id"]] * 2, sent
    # The first post's answer again, and no second post.
    assert [ack["event_id"] for ack in acks] == [acks[0]["event_id"]] * 2, acks
    say(bo, "after")
    expect(message(ann, "after")).to_be_visible()
    expect(message(bo, "said once")).to_have_count(1)
    expect(message(ann, "said once")).to_have_count(1)
    console.assert_clean()


def test_a_refused_message_says_why_beside_the_input(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, viewer = unique("c"), unique("v")
    room_id = api.open_room(creator, "Rules")

    def settings(**fields: object) -> None:
        reply = api.http.put("/v1/creator/chat-settings", json=fields, headers=api.auth(creator, "creator"))
        assert reply.status_code == 200, reply.text

    settings(blocked_words=["spoiler"], allow_links=False)
    page = watch(browser, console, site.base_url, room_id, viewer, "Rita", PHONE_SIZE)
    error = page.get_by_test_id("chat-error")

    say(page, "see example.com now")
    expect(error).to_have_attribute("data-code", "links_not_allowed")
    expect(error).to_have_text("Links aren't allowed in this chat.")
    # The refused text comes back to the input, to fix.
    expect(page.get_by_test_id("chat-input")).to_have_value("see example.com now")

    say(page, "a big spoiler here")
    expect(error).to_have_attribute("data-code", "message_blocked")

    settings(slow_mode_s=30)
    say(page, "first")
    expect(message(page, "first")).to_be_visible()
    expect(error).to_be_hidden()
    say(page, "second")
    expect(error).to_have_attribute("data-code", "slow_mode")
    expect(error).to_have_text(re.compile(r"^Slow mode: you can post again in (30|29|28|27|26|25) s\.$"))
    expect(message(page, "second")).to_have_count(0)
    assert_fits(page)
    console.assert_clean()


def test_the_overlay_alerts_follows_shares_and_like_milestones_and_shows_the_chat(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api, "Alerts")
    viewer = unique("v")
    named_token(api, viewer, "viewer", "Nia Park")
    overlay = new_page(browser, console, "overlay", OVERLAY_SIZE)
    open_overlay(overlay, site.base_url, overlay_url(api, creator) + "?likes_every=10&chat=1")
    alert, verb = overlay.get_by_test_id("alert"), overlay.get_by_test_id("alert-verb")

    reply = api.http.put(f"/v1/creators/{creator}/follow", headers=api.auth(viewer))
    assert reply.status_code == 200, reply.text
    expect(alert).to_have_attribute("data-kind", "follow")
    expect(overlay.get_by_test_id("alert-name")).to_have_text("Nia Park")
    expect(verb).to_have_text("followed")

    reply = api.http.post(f"/v1/rooms/{room_id}/share", headers=api.auth(viewer))
    assert reply.status_code == 200, reply.text
    expect(alert).to_have_attribute("data-kind", "share")
    expect(verb).to_have_text("shared the live")

    # 9 likes pass no milestone; the 10th does.
    for count in (9, 1):
        reply = api.http.post(f"/v1/rooms/{room_id}/likes", json={"count": count}, headers=api.auth(viewer))
        assert reply.status_code == 202, reply.text
    expect(alert).to_have_attribute("data-kind", "likes")
    expect(overlay.get_by_test_id("alert-name")).to_have_text("10 likes")

    reply = api.http.post(
        f"/v1/rooms/{room_id}/chat",
        json={"text": "hello overlay", "client_id": "m-1"},
        headers=api.auth(viewer),
    )
    assert reply.status_code == 201, reply.text
    widget = overlay.get_by_test_id("chat-widget")
    expect(message(widget, "hello overlay").get_by_test_id("chat-name")).to_have_text("Nia Park")
    paint(overlay, CHECKERBOARD)
    overlay.screenshot(path=screenshots() / "overlay-social.png")
    console.assert_clean()


@BOTH_SIZES
def test_the_dashboard_sets_chat_rules_moderators_and_shows_followers(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator, helper, fan = unique("c"), unique("v"), unique("v")
    named_token(api, helper, "viewer", "Hal Moss")
    api.me(helper)
    api.open_room(creator, "Dashboard")
    dashboard = open_dashboard(browser, console, site.base_url, creator, size)
    expect(dashboard.get_by_test_id("followers")).to_have_attribute("data-followers", "0")

    dashboard.get_by_test_id("slow-mode").fill("20")
    dashboard.get_by_test_id("blocked-words").fill("Spoiler, leak\nspoiler")
    dashboard.get_by_test_id("allow-links").check()
    dashboard.get_by_test_id("chat-settings-save").click()
    expect(dashboard.get_by_test_id("chat-settings-state")).to_have_attribute("data-state", "saved")
    # The words as the server keeps them: casefolded, each once.
    expect(dashboard.get_by_test_id("blocked-words")).to_have_value("spoiler, leak")
    kept = api.http.get("/v1/creator/chat-settings", headers=api.auth(creator, "creator")).json()
    assert kept == {"slow_mode_s": 20, "blocked_words": ["spoiler", "leak"], "allow_links": True}

    dashboard.get_by_test_id("moderator-id").fill(helper)
    dashboard.get_by_test_id("moderator-add").click()
    expect(dashboard.get_by_test_id("moderator-name")).to_have_text("Hal Moss")
    listed = api.http.get("/v1/creator/moderators", headers=api.auth(creator, "creator")).json()
    assert [moderator["id"] for moderator in listed["moderators"]] == [helper]
    dashboard.get_by_test_id(f"remove-moderator-{helper}").click()
    expect(dashboard.get_by_test_id("moderator")).to_have_count(0)
    assert api.http.get("/v1/creator/moderators", headers=api.auth(creator, "creator")).json() == {
        "moderators": []
    }

    reply = api.http.put(f"/v1/creators/{creator}/follow", headers=api.auth(fan))
    assert reply.status_code == 200, reply.text
    expect(dashboard.get_by_test_id("followers")).to_have_attribute("data-followers", "1")
    assert_fits(dashboard)
    console.assert_clean()


def test_markup_in_names_and_chat_shows_as_text_on_every_page(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api, "Markup")
    attacker, watcher = unique("v"), unique("v")
    reply = api.http.put(
        "/v1/creator/chat-settings", json={"allow_links": True}, headers=api.auth(creator, "creator")
    )
    assert reply.status_code == 200, reply.text
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def guarded(page: Page) -> None:
        page.on("dialog", on_dialog)

    overlay = new_page(browser, console, "overlay", OVERLAY_SIZE)
    guarded(overlay)
    open_overlay(overlay, site.base_url, overlay_url(api, creator) + "?chat=1")
    viewer = watch(browser, console, site.base_url, room_id, watcher, "Wes", DESKTOP_SIZE, guarded)
    sender = watch(browser, console, site.base_url, room_id, attacker, XSS_NAME, PHONE_SIZE, guarded)
    expect(sender.get_by_test_id("user-name")).to_have_text(XSS_NAME)

    for text in XSS_TEXTS:
        say(sender, text)
    sender.get_by_test_id("follow").click()
    for page in (viewer, sender, overlay.get_by_test_id("chat-widget")):
        for text in XSS_TEXTS:
            expect(message(page, text).get_by_test_id("chat-name")).to_have_text(XSS_NAME)
    expect(viewer.get_by_test_id("notice-follow")).to_contain_text(f"{XSS_NAME} followed")
    expect(viewer.get_by_test_id("joins")).to_have_text(joined(XSS_NAME))
    expect(overlay.get_by_test_id("alert-name")).to_have_text(XSS_NAME)

    dashboard = open_dashboard(browser, console, site.base_url, creator, PHONE_SIZE, before=guarded)
    dashboard.get_by_test_id("moderator-id").fill(attacker)
    dashboard.get_by_test_id("moderator-add").click()
    expect(dashboard.get_by_test_id("moderator-name")).to_have_text(XSS_NAME)

    # Nothing ran and nothing was made of the markup: no dialog, no flag, no new element.
    made = "document.querySelectorAll('img, svg, b, main script, body > script').length"
    for page in (viewer, sender, overlay, dashboard):
        assert page.evaluate("typeof window.__xss") == "undefined"
        assert page.evaluate(made) == 0
    assert dialogs == []
    console.assert_clean()


# ---------------------------------------------------------------- moderation


def test_the_creator_and_moderators_delete_mute_and_ban_from_the_viewer_page(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api, "Moderated")
    moderator, troll, guest = unique("v"), unique("v"), unique("v")
    reply = api.http.put(f"/v1/creator/moderators/{moderator}", headers=api.auth(creator, "creator"))
    assert reply.status_code == 204, reply.text

    # The creator moderates from the viewer page, at phone size, signed in with their own
    # (creator) token, as an app that knows who they are would open it.
    mia = new_page(browser, console, "Mia Streams", PHONE_SIZE)
    mia.add_init_script(
        f"sessionStorage.setItem('gifting.token.viewer', {json.dumps(api.token(creator, 'creator'))})"
    )
    mia.goto(f"{site.base_url}/?room={room_id}")
    expect(mia.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    expect(mia.get_by_test_id("follow")).to_be_hidden()
    # The troll's name is markup: it must stay text in the chat menus and the ban list.
    tom = watch(browser, console, site.base_url, room_id, troll, XSS_NAME, DESKTOP_SIZE)

    labels = {"delete": "Delete", "mute": "Mute 5 min", "ban": "Ban"}

    def act(page: Page, text: str, action: str) -> None:
        """Moderate a message from its menu, and wait for the page to confirm it, as the
        moderator does before the next step (the room's next message may race it otherwise)."""
        item = message(page, text)
        item.get_by_test_id("chat-menu").click()
        item.get_by_test_id(f"moderate-{action}").click()
        expect(page.get_by_test_id("toast-text").filter(has_text=f"{labels[action]}: done.")).to_be_visible()

    say(tom, "rude words")
    expect(message(mia, "rude words")).to_be_visible()
    act(mia, "rude words", "delete")
    expect(message(tom, "rude words")).to_have_count(0)
    expect(message(mia, "rude words")).to_have_count(0)

    say(tom, "more rude words")
    act(mia, "more rude words", "mute")
    say(tom, "still here")
    error = tom.get_by_test_id("chat-error")
    expect(error).to_have_attribute("data-code", "muted")
    expect(error).to_have_text(re.compile(r"^You are muted: you can chat again in (5 min|\d+ s)\.$"))

    act(mia, "more rude words", "ban")
    expect(tom.get_by_test_id("connection-state")).to_have_attribute("data-state", "closed")
    banned = tom.get_by_role("alert").get_by_test_id("toast-text")
    expect(banned).to_have_text("You are banned from this live.")

    # A moderator gets the menu once their own message shows the badge.
    mod = watch(browser, console, site.base_url, room_id, moderator, "Moe Derator", PHONE_SIZE)
    gus = watch(browser, console, site.base_url, room_id, guest, "Gus", DESKTOP_SIZE)
    say(mod, "on duty")
    expect(message(mod, "on duty").get_by_test_id("badge-moderator")).to_be_visible()
    say(gus, "spam spam")
    act(mod, "spam spam", "delete")
    expect(message(gus, "spam spam")).to_have_count(0)
    # Nobody else gets the menu.
    expect(gus.get_by_test_id("chat-menu")).to_have_count(0)

    # The dashboard: the log, newest first, and the unban.
    dashboard = open_dashboard(browser, console, site.base_url, creator, PHONE_SIZE)
    dashboard.get_by_test_id("moderation-log-panel").locator("summary").click()
    entries = dashboard.get_by_test_id("moderation-entry")
    expect(entries.first).to_have_attribute("data-action", "delete")
    expect(entries.first).to_contain_text(f"{moderator} deleted a message of {guest}")
    actions = [entries.nth(index).get_attribute("data-action") for index in range(entries.count())]
    assert actions[:4] == ["delete", "ban", "mute", "delete"], actions
    expect(entries.nth(1)).to_contain_text(f"{creator} banned {troll}")
    dashboard.get_by_test_id("bans-panel").locator("summary").click()
    expect(dashboard.get_by_test_id("banned-user")).to_contain_text(XSS_NAME)
    dashboard.get_by_test_id(f"unban-{troll}").click()
    expect(dashboard.get_by_test_id("unban-state")).to_have_attribute("data-state", "done")
    expect(dashboard.get_by_test_id("banned-user")).to_have_count(0)
    tom.reload()
    expect(tom.get_by_test_id("connection-state")).to_have_attribute("data-state", "open")
    for page in (mia, mod, dashboard):
        assert_fits(page)
        assert page.evaluate("document.querySelectorAll('img, svg, main script').length") == 0
    console.assert_clean()


def test_chat_rules_typed_before_the_saved_ones_arrive_are_kept(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    """The saved chat rules load beside the rest of the dashboard; when they arrive after the
    creator started typing, what the creator typed stays, and is what Save keeps."""
    api = site_api
    creator = unique("c")
    api.open_room(creator, "Dashboard")
    held: list[Route] = []

    def hold_the_load(route: Route) -> None:
        if route.request.method == "GET":
            held.append(route)
        else:
            route.continue_()

    dashboard = open_dashboard(
        browser,
        console,
        site.base_url,
        creator,
        before=lambda page: page.route("**/v1/creator/chat-settings", hold_the_load),
    )
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the dashboard never loaded its chat rules"
        dashboard.wait_for_timeout(20)
    dashboard.get_by_test_id("slow-mode").fill("20")
    loaded = "GET", f"{site.base_url}/v1/creator/chat-settings"
    with dashboard.expect_response(lambda reply: (reply.request.method, reply.url) == loaded):
        held[0].continue_()
    dashboard.get_by_test_id("chat-settings-save").click()
    expect(dashboard.get_by_test_id("chat-settings-state")).to_have_attribute("data-state", "saved")
    expect(dashboard.get_by_test_id("slow-mode")).to_have_value("20")
    kept = api.http.get("/v1/creator/chat-settings", headers=api.auth(creator, "creator")).json()
    assert kept["slow_mode_s"] == 20
    console.assert_clean()
