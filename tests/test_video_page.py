"""The page of a video (/v/{video_id}) and the dashboard's Videos section, in headless Chromium
at phone and desktop size: the video's record, a gift from the tray that moves the coins and
the top gifters, a refusal as a toast, and publishing from the dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.browser import (
    BOTH_SIZES,
    ConsoleWatch,
    assert_page_quality,
    fan_with,
    named_token,
    new_page,
    open_dashboard,
    reset_layout_shift,
    sign_in,
)
from tests.support import Api, ServerProcess, unique

pytestmark = pytest.mark.browser


def published(api: Api, creator: str, title: str) -> dict[str, Any]:
    body = {"title": title, "url": "https://videos.example/dance.mp4"}
    reply = api.http.post("/v1/videos", json=body, headers=api.auth(creator, "creator"))
    assert reply.status_code == 201, reply.text
    video: dict[str, Any] = reply.json()
    return video


@BOTH_SIZES
def test_the_video_page_shows_the_video_and_takes_gifts_from_the_tray(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator = unique("c")
    named_token(api, creator, "creator", "Mia Streams")
    video = published(api, creator, "Mia dances in the rain")
    fan = fan_with(api, 600, "Fiona Fan")
    assert (
        api.http.post(
            f"/v1/videos/{video['id']}/gifts",
            json={"gift_id": "doughnut", "count": 1, "idempotency_key": unique("k")},
            headers=api.auth(fan),
        ).status_code
        == 200
    )

    page = new_page(browser, console, "video", size)
    page.goto(f"{site.base_url}/v/{video['id']}")
    expect(page.get_by_test_id("video-title")).to_have_text("Mia dances in the rain")
    expect(page.get_by_test_id("video-creator")).to_have_text("Mia Streams")
    expect(page.get_by_test_id("video-link")).to_have_attribute("href", video["url"])
    expect(page.get_by_test_id("video-coins")).to_have_attribute("data-coins", "30")
    expect(page.get_by_test_id("top-gifters")).to_contain_text("Fiona Fan")
    assert_page_quality(page, console)

    viewer = unique("v")
    sign_in(page, viewer, "Vera Quinn")
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "0")
    reset_layout_shift(page)
    # With no coins, a tap is refused: a toast says why and moves nothing.
    page.get_by_test_id("gift-rose").click()
    expect(page.get_by_role("alert").filter(has_text="coins")).to_be_visible()
    assert_page_quality(page, console)

    api.buy(viewer)
    page.reload()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "550")
    for _ in range(2):
        page.get_by_test_id("gift-finger_heart").click()
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "540")
    expect(page.get_by_test_id("video-coins")).to_have_attribute("data-coins", "40")
    expect(page.get_by_test_id("top-gifters")).to_contain_text("Vera Quinn")
    assert api.coins(viewer) == 540
    # 15 for the doughnut, and 2 for each heart of 5 coins (rounded down).
    assert api.earnings(creator)["videos"] == [
        {"video_id": video["id"], "title": "Mia dances in the rain", "diamonds": 15 + 2 * 2}
    ]
    assert_page_quality(page, console)


@BOTH_SIZES
def test_an_unknown_video_says_so(
    site: ServerProcess, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    page = new_page(browser, console, "video", size)
    page.goto(f"{site.base_url}/v/{unique('v')}")
    expect(page.get_by_test_id("video-missing")).to_be_visible()
    expect(page.get_by_test_id("gift-tray")).to_be_hidden()
    assert_page_quality(page, console)


@BOTH_SIZES
def test_a_creator_publishes_a_video_from_the_dashboard_and_sees_its_coins(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch, size: dict[str, int]
) -> None:
    api = site_api
    creator = unique("c")
    page = open_dashboard(browser, console, site.base_url, creator, size)
    expect(page.get_by_test_id("videos-empty")).to_be_visible()
    page.get_by_test_id("video-title-input").fill("Behind the scenes")
    page.get_by_test_id("video-url-input").fill("https://videos.example/bts.mp4")
    page.get_by_test_id("video-publish").click()
    item = page.get_by_test_id("video-item")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("Behind the scenes")
    expect(page.get_by_test_id("video-state")).to_contain_text("Published")
    [video] = api.http.get(f"/v1/creators/{creator}/videos").json()["videos"]
    assert (video["title"], video["url"]) == ("Behind the scenes", "https://videos.example/bts.mp4")
    expect(item.get_by_role("link")).to_have_attribute("href", f"/v/{video['id']}")
    # A refused title is said on the page; nothing is published.
    page.get_by_test_id("video-title-input").fill("   ")
    page.get_by_test_id("video-url-input").fill("https://videos.example/x.mp4")
    page.get_by_test_id("video-publish").click()
    expect(page.get_by_test_id("video-state")).to_have_attribute("data-state", "error")
    assert len(api.http.get(f"/v1/creators/{creator}/videos").json()["videos"]) == 1
    # A gift on it shows in the list's coins at the next refresh.
    fan = fan_with(api, 100)
    body = {"gift_id": "doughnut", "count": 1, "idempotency_key": unique("k")}
    reply = api.http.post(f"/v1/videos/{video['id']}/gifts", json=body, headers=api.auth(fan))
    assert reply.status_code == 200, reply.text
    expect(page.get_by_test_id("video-item-coins")).to_have_attribute("data-coins", "30", timeout=15_000)
    assert_page_quality(page, console)
