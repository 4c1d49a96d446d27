"""The creator dashboard in headless Chromium against a real server: the money terms as the
server states them, the per-gift earnings history page by page, the withdrawal minimum before
and after a refused request, ending a LIVE behind a confirm and its summary, and the overlay
link (masked, copied with the builder's options, revealed on request, regenerated after a
confirm)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import (
    PHONE_SIZE,
    TIMES,
    ConsoleWatch,
    assert_page_quality,
    live_room,
    named_token,
    open_dashboard,
    overlay_url,
    own_server,
    reset_layout_shift,
    screenshots,
)
from tests.conftest import Engine
from tests.support import Api, ServerProcess, unique

pytestmark = pytest.mark.browser

MASK = "••••••••"


def terms_of(api: Api, creator: str) -> dict[str, Any]:
    reply = api.http.get("/v1/creator/earnings", headers=api.auth(creator, "creator"))
    assert reply.status_code == 200, reply.text
    terms: dict[str, Any] = reply.json()["terms"]
    return terms


def test_the_terms_are_the_servers_and_a_refused_withdrawal_says_the_minimum(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator = unique("c")
    named_token(api, creator, "creator", "Mia Streams")
    # The browser tests' server: the default share, value, minimum and cap; a 1-hour hold.
    assert terms_of(api, creator) == {
        "share_percent": 50.0,
        "diamond_value_millicents": 500,
        "currency": "USD",
        "min_withdrawal_diamonds": 10000,
        "min_withdrawal_minor": 5000,
        "hold_s": 3600,
        "daily_payout_cap_minor": 100000,
    }
    page = open_dashboard(browser, console, site.base_url, creator)
    expect(page.get_by_test_id("terms-share")).to_have_text(
        "You earn 50 % of the coins of every gift as diamonds."
    )
    expect(page.get_by_test_id("terms-value")).to_have_text(
        "1 diamond = $0.005, so 10,000 diamonds = $50.00."
    )
    expect(page.get_by_test_id("terms-hold")).to_have_text(
        "New diamonds are held 1 hour before you can withdraw them"
        " (a payment can still be refunded in that time)."
    )
    expect(page.get_by_test_id("terms-minimum")).to_have_text(
        "The minimum withdrawal is 10,000 diamonds ($50.00)."
    )
    expect(page.get_by_test_id("terms-cap")).to_have_text("You can withdraw up to $1,000.00 a day.")
    # The minimum shows beside the form before anyone submits.
    expect(page.get_by_test_id("withdraw-minimum")).to_have_text("Minimum 10,000 diamonds ($50.00).")
    expect(page.get_by_test_id("withdraw-minimum")).to_be_visible()
    reset_layout_shift(page)

    page.get_by_test_id("withdraw-input").fill("1")
    page.get_by_test_id("withdraw-submit").click()
    refusal = page.get_by_role("alert")
    # One sentence, with the server's numbers, said once.
    expect(refusal.get_by_test_id("toast-text")).to_have_text(
        "You asked for 1 diamond; the minimum withdrawal is 10,000 diamonds ($50.00)."
    )
    expect(refusal).to_have_count(1)
    expect(page.get_by_test_id("withdraw-state")).to_have_attribute("data-state", "refused")
    reply = api.http.get("/v1/creator/withdrawals", headers=api.auth(creator, "creator"))
    assert reply.json() == {"withdrawals": []}
    assert_page_quality(page, console)


def test_the_earnings_history_pages_and_agrees_with_the_api(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api, "History")
    fan, other = unique("f"), unique("f")
    named_token(api, fan, "viewer", "Ann Lee")
    named_token(api, other, "viewer", "Bo Park")
    api.buy(fan, "us_550")
    api.buy(other, "us_550")
    # 23 gifts: more than two pages of 10.
    sent: list[tuple[str, str, int]] = []
    for index in range(23):
        sender, gift, count = (fan, "finger_heart", 1 + index % 3) if index % 2 else (other, "perfume", 1)
        assert api.gift(sender, room_id, gift, count).status_code == 200
        sent.append((sender, gift, count))
    diamonds = sum(count * 5 // 2 if gift == "finger_heart" else 10 for _, gift, count in sent)

    page = open_dashboard(browser, console, site.base_url, creator, query="?page_size=10")
    expect(page.get_by_test_id("lifetime")).to_have_attribute("data-diamonds", str(diamonds))
    rows = page.get_by_test_id("ledger-row")
    expect(rows).to_have_count(10)
    more = page.get_by_test_id("ledger-more")
    more.click()
    expect(rows).to_have_count(20)
    more.click()
    expect(rows).to_have_count(23)
    expect(more).to_be_hidden()

    entries = [entry for entry in api.earnings_ledger(creator) if entry["kind"] == "gift"]
    assert len(entries) == 23
    names = {fan: "Ann Lee", other: "Bo Park"}
    gift_names = {"finger_heart": "Finger Heart", "perfume": "Perfume"}
    # Newest first, as the API pages them; each row says what its entry says.
    for index, (entry, (sender, gift, count)) in enumerate(zip(entries, reversed(sent), strict=True)):
        assert (entry["sender"], entry["gift_id"], entry["count"], entry["state"]) == (
            sender,
            gift,
            count,
            "pending",
        )
        row = rows.nth(index)
        assert row.get_attribute("data-id") == entry["id"]
        expect(row.get_by_test_id("ledger-sender")).to_have_text(names[sender])
        expect(row.get_by_test_id("ledger-gift")).to_have_text(f"{gift_names[gift]} {TIMES}{count}")
        expect(row.get_by_test_id("ledger-coins")).to_have_text(str(entry["coins"]))
        expect(row.get_by_test_id("ledger-diamonds")).to_have_text(str(entry["diamonds"]))
        expect(row.get_by_test_id("ledger-state")).to_have_text("Pending")
        when = datetime.fromtimestamp(entry["ts"] / 1000)
        assert str(when.year) in (row.get_by_test_id("ledger-when").text_content() or "")
    assert sum(entry["diamonds"] for entry in entries) == diamonds
    console.assert_clean()


def test_a_phones_history_card_says_each_figure_with_its_unit(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api, "Units")
    fan = unique("f")
    api.buy(fan, "us_100")
    assert api.gift(fan, room_id, "rose", 1).status_code == 200  # 1 coin, no whole diamond
    assert api.gift(fan, room_id, "rose", 2).status_code == 200  # 2 coins, 1 diamond
    page = open_dashboard(browser, console, site.base_url, creator, size=PHONE_SIZE)
    rows = page.get_by_test_id("ledger-row")
    expect(rows).to_have_count(2)

    def shown(row: int, figure: str) -> str:
        cell = rows.nth(row).get_by_test_id(f"ledger-{figure}")
        after: str = cell.evaluate("cell => getComputedStyle(cell, '::after').content")
        return f"{cell.text_content()}{after.strip(chr(34))}"

    # Newest first.
    assert (shown(0, "coins"), shown(0, "diamonds")) == ("2 coins", "1 diamond")
    assert (shown(1, "coins"), shown(1, "diamonds")) == ("1 coin", "0 diamonds")
    console.assert_clean()


def test_end_live_asks_first_then_shows_the_summary(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator, room_id = live_room(api, "Summary night")
    ann, bo = unique("f"), unique("f")
    named_token(api, ann, "viewer", "Ann Lee")
    named_token(api, bo, "viewer", "Bo Park")
    api.buy(ann, "us_1250")
    api.buy(bo, "us_550")
    assert api.gift(ann, room_id, "galaxy").status_code == 200  # 1,000 coins, 500 diamonds
    assert api.gift(bo, room_id, "hand_hearts", 2).status_code == 200  # 200 coins, 100 diamonds
    assert api.gift(bo, room_id, "finger_heart").status_code == 200  # 5 coins, 2 diamonds

    page = open_dashboard(browser, console, site.base_url, creator)
    expect(page.get_by_test_id("live-state")).to_have_attribute("data-live", "true")
    expect(page.get_by_test_id("lifetime")).to_have_attribute("data-diamonds", "602")

    # Cancel keeps the LIVE.
    page.get_by_test_id("end-live").click()
    dialog = page.get_by_test_id("end-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("End your LIVE?")
    expect(dialog).to_contain_text("Viewers will see it has ended.")
    page.get_by_test_id("end-cancel").click()
    expect(dialog).to_be_hidden()
    room = api.http.get(f"/v1/rooms/{room_id}").json()
    assert room["state"] == "live"
    expect(page.get_by_test_id("live-state")).to_have_attribute("data-live", "true")

    # Confirm ends it, and the summary shows the LIVE's figures.
    page.get_by_test_id("end-live").click()
    page.get_by_test_id("end-confirm").click()
    expect(page.get_by_test_id("live-state")).to_have_attribute("data-live", "false")
    assert api.http.get(f"/v1/rooms/{room_id}").json()["state"] == "ended"
    assert_summary(page)
    assert_page_quality(page, console)

    # After a reload, the summary of the last LIVE is read again; on a phone too.
    page.reload()
    expect(page.get_by_test_id("dashboard")).to_be_visible()
    assert_summary(page)
    expect(page.get_by_test_id("ledger-row")).to_have_count(3)
    page.screenshot(path=screenshots() / "creator.png")
    page.set_viewport_size({"width": PHONE_SIZE["width"], "height": PHONE_SIZE["height"]})
    reset_layout_shift(page)
    assert_summary(page)
    assert_page_quality(page, console)
    page.screenshot(path=screenshots() / "creator-phone.png")

    # Going LIVE again puts the last summary away.
    page.get_by_test_id("live-title").fill("Second night")
    page.get_by_test_id("go-live").click()
    expect(page.get_by_test_id("live-state")).to_have_text("LIVE: Second night")
    expect(page.get_by_test_id("live-summary")).to_be_hidden()
    page.reload()
    expect(page.get_by_test_id("live-state")).to_have_attribute("data-live", "true")
    expect(page.get_by_test_id("live-summary")).to_be_hidden()
    console.assert_clean()


def assert_summary(page: Page) -> None:
    summary = page.get_by_test_id("live-summary")
    expect(summary).to_be_visible()
    expect(page.get_by_test_id("summary-title")).to_have_text("Summary night")
    expect(page.get_by_test_id("summary-coins")).to_have_attribute("data-coins", "1205")
    expect(page.get_by_test_id("summary-coins")).to_have_text("1,205")
    expect(page.get_by_test_id("summary-diamonds")).to_have_attribute("data-diamonds", "602")
    expect(page.get_by_test_id("summary-value")).to_have_text("$3.01")
    expect(page.get_by_test_id("summary-gifts")).to_have_text("3")
    expect(page.get_by_test_id("summary-gifters")).to_have_text("2")
    expect(page.get_by_test_id("summary-likes")).to_have_text("0")
    gifters = page.get_by_test_id("summary-gifter")
    expect(gifters).to_have_count(2)
    expect(gifters.nth(0)).to_contain_text("Ann Lee")
    expect(gifters.nth(0).get_by_test_id("summary-gifter-coins")).to_have_text("1,000 coins")
    expect(gifters.nth(1)).to_contain_text("Bo Park")
    expect(gifters.nth(1).get_by_test_id("summary-gifter-coins")).to_have_text("205 coins")
    # A live this test keeps under a second (its events now reach the page at once) says so.
    expect(page.get_by_test_id("summary-duration")).to_have_text(
        re.compile(r"^(less than a second|\d+ (s|min \d\d s))$")
    )


def visible_text(page: Page) -> str:
    text: str = page.evaluate("document.body.innerText")
    return text


def clipboard(page: Page) -> str:
    text: str = page.evaluate("navigator.clipboard.readText()")
    return text


def test_the_overlay_link_is_masked_copied_with_options_and_regenerated(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    api = site_api
    creator = unique("c")
    named_token(api, creator, "creator", "Mia Streams")
    path = overlay_url(api, creator)
    token = path.rsplit("/", 1)[1]
    full = f"{site.base_url}{path}"
    page = open_dashboard(
        browser,
        console,
        site.base_url,
        creator,
        size=PHONE_SIZE,
        permissions=["clipboard-read", "clipboard-write"],
    )
    link = page.get_by_test_id("overlay-url")
    masked = f"{site.base_url}/overlay/{MASK}{token[-4:]}"
    expect(link).to_have_text(masked)
    assert token not in visible_text(page)

    page.get_by_test_id("copy-overlay").click()
    expect(page.get_by_role("status").filter(has_text="Overlay link copied")).to_be_visible()
    assert clipboard(page) == full
    assert token not in visible_text(page)

    page.get_by_test_id("reveal-overlay").click()
    expect(link).to_have_text(full)
    expect(page.get_by_test_id("reveal-overlay")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("reveal-overlay").click()
    expect(link).to_have_text(masked)
    assert token not in visible_text(page)

    # The builder's choices go into the link (defaults stay out of it).
    page.get_by_test_id("overlay-position").select_option("bottom-right")
    page.get_by_test_id("overlay-scale").select_option("1.5")
    page.get_by_test_id("overlay-min-coins").fill("100")
    widgets = page.get_by_test_id("overlay-widgets")
    widgets.get_by_label("Combos").uncheck()
    widgets.get_by_label("Chat").check()
    page.get_by_test_id("overlay-sound").check()
    query = "position=bottom-right&scale=1.5&min_coins=100&widgets=alerts,top,goal,chat&sound=1"
    expect(link).to_have_text(f"{masked}?{query}")
    page.get_by_test_id("copy-overlay").click()
    copied = clipboard(page)
    assert copied == f"{full}?{query}"
    assert parse_qs(urlsplit(copied).query) == {
        "position": ["bottom-right"],
        "scale": ["1.5"],
        "min_coins": ["100"],
        "widgets": ["alerts,top,goal,chat"],
        "sound": ["1"],
    }
    assert_page_quality(page, console)

    # Regenerate asks first: cancel keeps the link.
    page.get_by_test_id("regenerate-overlay").click()
    dialog = page.get_by_test_id("regenerate-dialog")
    expect(dialog).to_contain_text("Overlays open with the old link stop at once")
    page.get_by_test_id("regenerate-cancel").click()
    expect(dialog).to_be_hidden()
    assert overlay_url(api, creator) == path

    page.get_by_test_id("regenerate-overlay").click()
    page.get_by_test_id("regenerate-confirm").click()
    expect(page.get_by_role("status").filter(has_text="New link made")).to_be_visible()
    new_path = overlay_url(api, creator)
    new_token = new_path.rsplit("/", 1)[1]
    assert new_token != token
    expect(link).to_have_text(f"{site.base_url}/overlay/{MASK}{new_token[-4:]}?{query}")
    assert new_token not in visible_text(page)
    page.get_by_test_id("copy-overlay").click()
    expect(page.get_by_role("status").filter(has_text="Overlay link copied")).to_be_visible()
    assert clipboard(page) == f"{site.base_url}{new_path}?{query}"
    console.assert_clean()


@pytest.fixture(scope="module")
def paying_site(engine: Engine, logs: Path, chromium: str) -> Iterator[ServerProcess]:
    """A server whose diamonds are available at once, with a small minimum and payout cap."""
    with own_server(
        engine,
        logs,
        GIFTING_DIAMOND_HOLD_S="0.001",
        GIFTING_MIN_WITHDRAWAL_DIAMONDS="100",
        GIFTING_DAILY_PAYOUT_CAP_MINOR="100",
    ) as server:
        yield server


def test_withdrawals_show_their_dates_and_states_and_the_servers_refusal(
    paying_site: ServerProcess, browser: Browser, console: ConsoleWatch
) -> None:
    site = paying_site
    with httpx.Client(base_url=site.base_url, timeout=10) as http:
        api = Api(http)
        creator, room_id = live_room(api, "Payday")
        fan = unique("f")
        api.buy(fan, "us_550")
        for _ in range(5):  # 500 coins: 250 diamonds, available at once
            assert api.gift(fan, room_id, "hand_hearts").status_code == 200

        page = open_dashboard(browser, console, site.base_url, creator)
        expect(page.get_by_test_id("available")).to_have_attribute("data-diamonds", "250")
        expect(page.get_by_test_id("withdraw-minimum")).to_have_text("Minimum 100 diamonds ($0.50).")
        expect(page.get_by_test_id("terms-cap")).to_have_text("You can withdraw up to $1.00 a day.")
        page.get_by_test_id("withdraw-input").fill("150")
        page.get_by_test_id("withdraw-submit").click()
        expect(page.get_by_test_id("withdraw-state")).to_have_text(
            "Requested: $0.75. We'll let you know when it's paid."
        )
        row = page.get_by_test_id("withdrawal")
        expect(row).to_have_count(1)
        expect(row).to_have_attribute("data-state", "requested")
        expect(row.get_by_test_id("withdrawal-state")).to_have_text("Requested")
        expect(row.get_by_test_id("withdrawal-dates")).to_have_text(
            re.compile(r"^Requested [^·]*\d:\d\d[^·]*$")
        )
        expect(page.get_by_test_id("reserved")).to_have_attribute("data-diamonds", "150")

        # Within the minimum and the available diamonds, but past today's cap: the server
        # refuses, and the page says so with the cap's figure.
        console.tolerate.append(re.compile(r"status of 409"))
        page.get_by_test_id("withdraw-input").fill("100")
        page.get_by_test_id("withdraw-submit").click()
        expect(page.get_by_role("alert").get_by_test_id("toast-text")).to_have_text(
            "That would pass today's payout limit of $1.00. Try a smaller amount or tomorrow."
        )
        expect(page.get_by_test_id("withdraw-state")).to_have_attribute("data-state", "refused")

        (withdrawal,) = api.http.get("/v1/creator/withdrawals", headers=api.auth(creator, "creator")).json()[
            "withdrawals"
        ]
        expect(row).to_have_attribute("data-requested-ms", str(withdrawal["requested_ms"]))
        paid = api.http.post(
            f"/v1/admin/withdrawals/{withdrawal['withdrawal_id']}/paid",
            json={"note": "sent"},
            headers=api.auth("boss", "admin"),
        )
        assert paid.status_code == 200, paid.text
        expect(row).to_have_attribute("data-state", "paid")
        expect(row.get_by_test_id("withdrawal-state")).to_have_text("Paid")
        decided = paid.json()["decided_ms"]
        assert isinstance(decided, int)
        expect(row).to_have_attribute("data-decided-ms", str(decided))
        expect(row.get_by_test_id("withdrawal-dates")).to_have_text(
            re.compile(r"^Requested [^·]*\d:\d\d[^·]* · Paid [^·]*\d:\d\d[^·]*$")
        )
        expect(page.get_by_test_id("withdrawn")).to_have_attribute("data-diamonds", "150")
        console.assert_clean()


def test_copy_works_without_the_clipboard_api(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    """Where the page is not a secure context (plain http on a LAN address) there is no
    navigator.clipboard: Copy falls back to the copy command, and the link still lands on
    the clipboard."""
    api = site_api
    creator = unique("c")
    named_token(api, creator, "creator", "Mia Streams")
    path = overlay_url(api, creator)
    page = open_dashboard(
        browser,
        console,
        site.base_url,
        creator,
        before=lambda page: page.add_init_script("delete Navigator.prototype.clipboard"),
        permissions=["clipboard-read", "clipboard-write"],
    )
    assert page.evaluate("navigator.clipboard === undefined")
    page.get_by_test_id("copy-overlay").click()
    expect(page.get_by_role("status").filter(has_text="Overlay link copied")).to_be_visible()
    # Another tab of the same browser reads the clipboard.
    reader = page.context.new_page()
    reader.goto(f"{site.base_url}/creator")
    assert clipboard(reader) == f"{site.base_url}{path}"
    assert path.rsplit("/", 1)[1] not in visible_text(page)
    console.assert_clean()
