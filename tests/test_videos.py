"""Videos: publishing and reading video records, and gifts on them through the one gift path.

The tests drive a server of their own (its own key prefix), so that the audit at the end of
each money test reads only these books.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import httpx
import pytest

from server.audit import AuditResult, audit_books
from server.keys import KeySchema
from server.settings import Settings
from server.store import Store
from server.store.records import CreatorCredit
from tests.conftest import Engine
from tests.support import (
    Api,
    delete_prefix,
    engine_client_async,
    running_server,
    server_env,
    strand,
    unique,
    webhook,
)

SHARE = Fraction(1, 2)


@dataclass
class Books:
    api: Api
    prefix: str
    url: str

    def audit(self) -> AuditResult:
        async def run() -> AuditResult:
            async with engine_client_async(self.url) as client:
                return await audit_books(client, KeySchema(self.prefix), SHARE)

        return asyncio.run(run())


@pytest.fixture(scope="module")
def books(engine: Engine, logs: Any) -> Iterator[Books]:
    prefix = f"{unique('vid')}:"
    try:
        with (
            running_server(server_env(engine.url, prefix), logs) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as http,
        ):
            yield Books(Api(http), prefix, engine.url)
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)


@pytest.fixture
def api(books: Books) -> Api:
    return books.api


def publish(
    api: Api, creator: str, title: str = "My first dance", url: str = "https://v.example/1.mp4"
) -> Any:
    return api.http.post(
        "/v1/videos", json={"title": title, "url": url}, headers=api.auth(creator, "creator")
    )


def video_of(api: Api, creator: str, title: str = "My first dance") -> str:
    reply = publish(api, creator, title)
    assert reply.status_code == 201, reply.text
    video_id: str = reply.json()["id"]
    return video_id


def gift(api: Api, user: str, video_id: str, gift_id: str, count: int = 1, key: str | None = None) -> Any:
    body = {"gift_id": gift_id, "count": count, "idempotency_key": key or unique("k")}
    return api.http.post(f"/v1/videos/{video_id}/gifts", json=body, headers=api.auth(user))


def video(api: Api, video_id: str) -> dict[str, Any]:
    reply = api.http.get(f"/v1/videos/{video_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def error_code(reply: Any) -> tuple[int, str]:
    return reply.status_code, reply.json()["error"]["code"]


# -- records -----------------------------------------------------------------------------------


def test_a_creator_publishes_videos_that_anyone_reads_newest_first(api: Api) -> None:
    creator = unique("c")
    before = int(time.time() * 1000)
    first = publish(api, creator, "Morning run", "https://v.example/run.mp4")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["id"].startswith("v") and before <= body["created_ms"] <= int(time.time() * 1000) + 1000
    assert body == {
        "id": body["id"],
        "creator": {"id": creator, "name": creator.capitalize()},  # the demo names
        "title": "Morning run",
        "url": "https://v.example/run.mp4",
        "created_ms": body["created_ms"],
        "coins": 0,
        "top_gifters": [],
    }
    second = video_of(api, creator, "Evening swim")
    assert video(api, body["id"]) == body  # read without a token: the page reads it first
    listed = api.http.get(f"/v1/creators/{creator}/videos").json()["videos"]
    assert [v["id"] for v in listed] == [second, body["id"]]
    assert listed[1] == body
    assert api.http.get(f"/v1/creators/{unique('c')}/videos").json() == {"videos": []}


@pytest.mark.parametrize(
    "body",
    [
        {"title": "", "url": "https://v.example/a"},
        {"title": "   ", "url": "https://v.example/a"},
        {"title": "x" * 121, "url": "https://v.example/a"},
        {"title": "ok", "url": "javascript:alert(1)"},
        {"title": "ok", "url": "ftp://v.example/a"},
        {"title": "ok", "url": "https://"},
        {"title": "ok", "url": "https://v.example/a b"},
        {"title": "ok", "url": "https://v.example/" + "a" * 2040},
        {"title": "ok"},
        {"title": "ok", "url": "https://v.example/a", "room_id": "r1"},
        {"title": 7, "url": "https://v.example/a"},
    ],
)
def test_a_bad_video_is_refused_and_nothing_is_published(api: Api, body: dict[str, Any]) -> None:
    creator = unique("c")
    reply = api.http.post("/v1/videos", json=body, headers=api.auth(creator, "creator"))
    assert error_code(reply) == (422, "invalid_request"), reply.text
    assert api.http.get(f"/v1/creators/{creator}/videos").json() == {"videos": []}


def test_only_creators_publish_and_an_unknown_video_is_404(api: Api) -> None:
    viewer = unique("v")
    body = {"title": "a", "url": "https://a.b"}
    assert error_code(api.http.post("/v1/videos", json=body, headers=api.auth(viewer))) == (403, "forbidden")
    assert api.http.post("/v1/videos", json=body).status_code == 401
    assert api.http.get(f"/v1/creators/{viewer}/videos").json() == {"videos": []}
    assert error_code(api.http.get(f"/v1/videos/{unique('v')}")) == (404, "not_found")
    assert api.http.get("/v1/videos/a%7Bb").status_code in (400, 404, 422)
    # The longest title and URL allowed are kept whole.
    url = "https://v.example/" + "a" * (2048 - len("https://v.example/"))
    reply = publish(api, unique("c"), "t" * 120, url)
    assert reply.status_code == 201 and (reply.json()["title"], reply.json()["url"]) == ("t" * 120, url)


# -- gifts -------------------------------------------------------------------------------------


def test_a_gift_on_a_video_debits_the_sender_and_credits_the_creator(books: Books) -> None:
    api, creator, viewer = books.api, unique("c"), unique("v")
    video_id = video_of(api, creator, "Cooking show")
    api.buy(viewer)
    reply = gift(api, viewer, video_id, "hand_hearts", 3)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["coins"], body["cost"]) == (250, 300)
    assert api.coins(viewer) == 250
    entry = api.ledger(viewer)[0]
    row = {name: entry.get(name) for name in ("kind", "delta", "balance", "ref", "room_id", "video_id")}
    assert row == {
        "kind": "gift",
        "delta": -300,
        "balance": 250,
        "ref": body["gift_event_id"],
        "room_id": "",
        "video_id": video_id,
    }
    earnings = api.earnings(creator)
    assert (earnings["pending"], earnings["lifetime"], earnings["available"]) == (150, 150, 0)
    assert earnings["lives"] == []
    assert earnings["videos"] == [{"video_id": video_id, "title": "Cooking show", "diamonds": 150}]
    [credit] = api.earnings_ledger(creator)
    assert {k: credit[k] for k in ("diamonds", "ref", "video_id", "video_title", "state", "room_id")} == {
        "diamonds": 150,
        "ref": body["gift_event_id"],
        "video_id": video_id,
        "video_title": "Cooking show",
        "state": "pending",
        "room_id": "",
    }
    assert video(api, video_id)["coins"] == 300
    assert video(api, video_id)["top_gifters"] == [
        {"user_id": viewer, "name": viewer.capitalize(), "coins": 300}
    ]
    # A second sender and a second gift: top gifters by coins, the totals exact.
    other = unique("v")
    api.buy(other)
    assert gift(api, other, video_id, "corgi").status_code == 200
    assert gift(api, viewer, video_id, "rose", 2).status_code == 200
    shown = video(api, video_id)
    assert shown["coins"] == 300 + 299 + 2
    assert shown["top_gifters"] == [
        {"user_id": viewer, "name": viewer.capitalize(), "coins": 302},
        {"user_id": other, "name": other.capitalize(), "coins": 299},
    ]
    assert api.earnings(creator)["videos"][0]["diamonds"] == 150 + 149 + 1
    assert books.audit().ok


def test_a_retried_video_gift_charges_once_and_a_key_means_one_gift(books: Books) -> None:
    api, creator, viewer = books.api, unique("c"), unique("v")
    video_id = video_of(api, creator)
    api.buy(viewer)
    first = gift(api, viewer, video_id, "doughnut", 2, key="tap-1")
    assert first.status_code == 200
    retries = [gift(api, viewer, video_id, "doughnut", 2, key="tap-1") for _ in range(3)]
    assert all(r.json() == first.json() for r in retries)
    assert all(r.headers.get("idempotent-replayed") == "true" for r in retries)
    assert api.coins(viewer) == 490 and len(api.ledger(viewer)) == 2
    assert api.earnings(creator)["pending"] == 30
    assert video(api, video_id)["coins"] == 60
    # The same key for another gift, on another video or in a room, is refused.
    other_video = video_of(api, creator, "Second")
    room_id = api.open_room(unique("c"))
    for reply in (
        gift(api, viewer, video_id, "doughnut", 3, key="tap-1"),
        gift(api, viewer, other_video, "doughnut", 2, key="tap-1"),
        api.gift(viewer, room_id, "doughnut", 2, key="tap-1"),
    ):
        assert error_code(reply) == (409, "idempotency_mismatch")
    assert api.coins(viewer) == 490 and video(api, other_video)["coins"] == 0


def test_video_gift_refusals_change_nothing(books: Books) -> None:
    api, creator, viewer = books.api, unique("c"), unique("v")
    video_id = video_of(api, creator)
    api.buy(viewer)
    # Insufficient coins.
    poor = gift(api, viewer, video_id, "money_gun", 2)
    assert error_code(poor) == (402, "insufficient_coins")
    assert (poor.json()["error"]["cost"], poor.json()["error"]["balance"]) == (1000, 550)
    # The daily budget.
    api.http.put("/v1/wallet/limits", json={"daily_limit": 250}, headers=api.auth(viewer))
    assert gift(api, viewer, video_id, "hand_hearts", 2).status_code == 200
    over = gift(api, viewer, video_id, "hand_hearts", 1)
    assert error_code(over) == (403, "daily_limit_exceeded")
    assert over.json()["error"]["budget_left"] == 50
    api.http.put("/v1/wallet/limits", json={"daily_limit": None}, headers=api.auth(viewer))
    # The creator's own video, an unknown video, an unknown gift, a bad body.
    api.buy(creator)
    assert error_code(gift(api, creator, video_id, "rose")) == (409, "self_gift")
    assert error_code(gift(api, viewer, unique("v"), "rose")) == (404, "not_found")
    assert error_code(gift(api, viewer, video_id, "no_such_gift")) == (404, "unknown_gift")
    bad = api.http.post(f"/v1/videos/{video_id}/gifts", json={"gift_id": "rose"}, headers=api.auth(viewer))
    assert error_code(bad) == (422, "invalid_request")
    assert api.http.post(f"/v1/videos/{video_id}/gifts", json={}).status_code == 401
    assert api.coins(viewer) == 350 and api.coins(creator) == 550
    assert video(api, video_id)["coins"] == 200
    assert api.earnings(creator)["pending"] == 100
    assert books.audit().ok


def test_a_banned_sender_cannot_gift_on_the_creators_videos_but_an_earlier_gift_replays(
    books: Books,
) -> None:
    api, creator, viewer = books.api, unique("c"), unique("v")
    video_id = video_of(api, creator)
    api.buy(viewer)
    key = unique("k")
    first = gift(api, viewer, video_id, "rose", key=key)
    assert first.status_code == 200, first.text
    room_id = api.open_room(creator)
    banned = api.http.put(f"/v1/rooms/{room_id}/bans/{viewer}", headers=api.auth(creator, "creator"))
    assert banned.status_code < 300, banned.text
    assert error_code(gift(api, viewer, video_id, "rose")) == (403, "banned")
    again = gift(api, viewer, video_id, "rose", key=key)
    assert again.status_code == 200 and again.json()["gift_event_id"] == first.json()["gift_event_id"]
    assert api.coins(viewer) == 549
    assert video(api, video_id)["coins"] == 1
    assert books.audit().ok


def test_the_gift_rate_holds_on_videos(books: Books) -> None:
    api, viewer = books.api, unique("v")
    video_id = video_of(api, unique("c"))
    api.buy(viewer)
    accepted = 0
    for _ in range(Settings().gift_burst * 3):
        reply = gift(api, viewer, video_id, "rose")
        if reply.status_code == 429:
            assert reply.json()["error"]["code"] == "rate_limited" and reply.headers["retry-after"]
            break
        assert reply.status_code == 200, reply.text
        accepted += 1
    else:
        pytest.fail("no gift was refused past the burst")
    assert accepted >= Settings().gift_burst
    assert api.coins(viewer) == 550 - accepted and video(api, video_id)["coins"] == accepted


def test_a_chargeback_reverses_a_video_gifts_diamonds(books: Books) -> None:
    api, creator, viewer = books.api, unique("c"), unique("v")
    video_id = video_of(api, creator)
    order = api.buy(viewer)
    reply = gift(api, viewer, video_id, "corgi")
    assert reply.status_code == 200
    assert api.earnings(creator)["pending"] == 149
    payment_id = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(viewer)).json()[
        "payment_id"
    ]
    disputed = webhook(api, order, payment_id, event_type="payment.disputed")
    assert disputed.status_code == 200 and disputed.json()["clawed_back"] is True, disputed.text
    earnings = api.earnings(creator)
    assert (earnings["pending"], earnings["reversed"], earnings["lifetime"]) == (0, 149, 149)
    states = {e["ref"]: e.get("state") for e in api.earnings_ledger(creator) if e["kind"] == "gift"}
    assert states == {reply.json()["gift_event_id"]: "clawed_back"}
    assert api.coins(viewer) == 550 - 299 - 550
    assert books.audit().ok


def test_the_sweeper_delivers_a_stranded_video_gift(books: Books) -> None:
    api, creator, viewer = books.api, unique("c"), unique("v")
    video_id = video_of(api, creator)
    api.buy(viewer)
    credit = CreatorCredit(
        unique("g_"), creator, "", viewer, "corgi", 1, 299, 149, int(time.time() * 1000),
        share=SHARE, video_id=video_id,
    )  # fmt: skip

    async def strand_and_wait() -> None:
        async with Store.from_url(books.url, KeySchema(books.prefix)) as store:
            await strand(store, credit)
            [pending] = await store.outbox.pending(viewer)
            assert pending == dataclasses.replace(credit, debit_ms=pending.debit_ms)
            deadline = time.monotonic() + 10
            while await store.outbox.pending(viewer):
                assert time.monotonic() < deadline, "the server's sweeper did not deliver the video gift"
                await asyncio.sleep(0.05)

    asyncio.run(strand_and_wait())
    assert api.earnings(creator)["lifetime"] == 149
    assert video(api, video_id)["coins"] == 299
    assert api.earnings(creator)["videos"] == [
        {"video_id": video_id, "title": "My first dance", "diamonds": 149}
    ]
    assert [e.get("video_id") for e in api.ledger(viewer) if e["kind"] == "gift"] == [video_id]
    assert books.audit().ok


def test_an_old_outbox_entry_without_a_video_reads_as_a_room_gift() -> None:
    credit = CreatorCredit("g1", "c", "r1", "s", "rose", 1, 1, 0, 5)
    assert b"video_id" not in credit.to_json()
    assert CreatorCredit.from_json(credit.to_json()) == credit
    on_video = CreatorCredit("g2", "c", "", "s", "rose", 1, 1, 0, 5, video_id="v1")
    assert CreatorCredit.from_json(on_video.to_json()) == on_video


def test_the_books_of_every_test_above_balance(books: Books) -> None:
    result = books.audit()
    assert result.ok, result.violations
