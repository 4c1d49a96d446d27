"""LIVE battles: a real server process on its own key prefix, real sockets, the books audited.

Each side's score is checked against the gifts sent to its room, to the coin; the frames
both rooms receive against the battle's record; the audit's ``battle_score`` rule against
the ledgers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import httpx
import pytest

from server.audit import audit_books
from server.keys import KeySchema
from server.store import Store
from server.store.records import CreatorCredit
from tests.conftest import Engine
from tests.support import (
    Api,
    delete_prefix,
    engine_client_async,
    running_server,
    server_env,
    start_battle,
    unique,
)
from tests.wsclient import Frame, RoomSocket

SHARE = Fraction(1, 2)
PRICES = {"rose": 1, "finger_heart": 5, "doughnut": 30, "hand_hearts": 100}


class Arena:
    """A server of its own, its API, and helpers for battles."""

    def __init__(self, api: Api, base_url: str, engine_url: str, prefix: str) -> None:
        self.api = api
        self.base_url = base_url
        self.engine_url = engine_url
        self.prefix = prefix

    def live(self) -> tuple[str, str]:
        creator = unique("c")
        return creator, self.api.open_room(creator)

    def fans(self, count: int, package: str) -> list[str]:
        """``count`` new viewers, each with ``package``'s coins."""
        fans = [unique("v") for _ in range(count)]
        for fan in fans:
            self.api.buy(fan, package)
        return fans

    def post(
        self, user: str, path: str, body: dict[str, Any] | None = None, role: str = "creator"
    ) -> httpx.Response:
        return self.api.http.post(path, json=body or {}, headers=self.api.auth(user, role))

    def invite(self, creator: str, opponent: str, duration_s: int = 300) -> httpx.Response:
        return self.post(creator, "/v1/battles", {"opponent_id": opponent, "duration_s": duration_s})

    def battle(self, battle_id: str) -> dict[str, Any]:
        reply = self.api.http.get(f"/v1/battles/{battle_id}", headers=self.api.auth(unique("v")))
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def audit_ok(self) -> None:
        async def run() -> Any:
            async with engine_client_async(self.engine_url) as client:
                return await audit_books(client, KeySchema(self.prefix), SHARE)

        result = asyncio.run(run())
        assert result.ok, result.report()
        assert result.totals["battles"] >= 1


@pytest.fixture(scope="module")
def arena(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arena]:
    prefix = f"{unique('battle')}:"
    env = server_env(engine.url, prefix, GIFTING_GIFT_RATE="1000", GIFTING_GIFT_BURST="1000")
    with (
        running_server(env, tmp_path_factory.mktemp("battle-logs")) as process,
        httpx.Client(base_url=process.base_url, timeout=10) as http,
    ):
        yield Arena(Api(http), process.base_url, engine.url, prefix)
    if not engine.owned:
        delete_prefix(engine.url, prefix)


def score_frame(sides: list[dict[str, Any]]) -> tuple[int, int]:
    return sides[0]["score"], sides[1]["score"]


async def wait_scores(socket: RoomSocket, battle_id: str, scores: tuple[int, int]) -> Frame:
    """The first ``battle`` event of ``battle_id`` showing ``scores``."""
    frame = await socket.wait_for(
        lambda f: any(
            e["type"] == "battle" and e["battle_id"] == battle_id and score_frame(e["sides"]) == scores
            for e in f.get("events", ())
        ),
        wait_s=15,
    )
    return next(e for e in frame["events"] if e["type"] == "battle" and score_frame(e["sides"]) == scores)


def test_refusals_change_nothing(arena: Arena) -> None:
    a, room_a = arena.live()
    b, _ = arena.live()
    offline = unique("c")
    viewer = unique("v")
    assert arena.invite(a, a).json()["error"]["code"] == "self_battle"
    reply = arena.invite(a, offline)
    assert (reply.status_code, reply.json()["error"]["code"]) == (409, "not_live")
    reply = arena.invite(offline, a)
    assert (reply.status_code, reply.json()["error"]["code"]) == (409, "not_live")
    reply = arena.post(viewer, "/v1/battles", {"opponent_id": a}, role="viewer")
    assert (reply.status_code, reply.json()["error"]["code"]) == (403, "forbidden")
    bad = ({"opponent_id": b, "duration_s": 59}, {"opponent_id": b, "duration_s": 601}, {"opponent": b})
    for body in bad:
        reply = arena.post(a, "/v1/battles", body)
        assert (reply.status_code, reply.json()["error"]["code"]) == (422, "invalid_request"), body
    reply = arena.api.http.get(f"/v1/battles/{unique('b')}", headers=arena.api.auth(viewer))
    assert (reply.status_code, reply.json()["error"]["code"]) == (404, "battle_not_found")
    # None of them claimed anyone: a proper invitation goes through.
    invited = arena.invite(a, b)
    assert invited.status_code == 201, invited.text
    battle = invited.json()
    assert battle["state"] == "invited" and battle["inviter"] == a
    assert [side["creator"] for side in battle["sides"]] == [a, b]
    assert battle["sides"][0]["room_id"] == room_a
    # One battle at a time, for either of them.
    c, _ = arena.live()
    for inviter, opponent in ((a, c), (c, b), (b, c)):
        reply = arena.invite(inviter, opponent)
        assert (reply.status_code, reply.json()["error"]["code"]) == (409, "already_in_battle")
    # Only the invited creator accepts; the invitation is then no longer open.
    reply = arena.post(a, f"/v1/battles/{battle['battle_id']}/accept")
    assert (reply.status_code, reply.json()["error"]["code"]) == (403, "forbidden")
    mine = arena.api.http.get("/v1/me/battle", headers=arena.api.auth(b, "creator")).json()["battle"]
    assert mine["battle_id"] == battle["battle_id"]
    declined = arena.post(b, f"/v1/battles/{battle['battle_id']}/decline")
    assert declined.status_code == 200 and declined.json()["state"] == "declined"
    reply = arena.post(b, f"/v1/battles/{battle['battle_id']}/accept")
    assert (reply.status_code, reply.json()["error"]["code"]) == (409, "battle_not_invited")
    assert arena.api.http.get("/v1/me/battle", headers=arena.api.auth(a, "creator")).json()["battle"] is None
    # Both are free again.
    assert arena.invite(b, a).status_code == 201


def test_an_accept_tapped_several_times_at_once_starts_the_battle_once_and_keeps_it(arena: Arena) -> None:
    """Accepts racing one another: one starts the battle, the others are refused, and none
    closes the battle the first started (each refused accept used to free both creators and
    drop the battle's end from the clock)."""
    a, room_a = arena.live()
    b, _ = arena.live()
    invited = arena.invite(a, b)
    assert invited.status_code == 201, invited.text
    battle_id = invited.json()["battle_id"]

    async def tap_accept_at_once(times: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=arena.base_url, timeout=10) as http:
            path, headers = f"/v1/battles/{battle_id}/accept", arena.api.auth(b, "creator")
            return await asyncio.gather(*(http.post(path, json={}, headers=headers) for _ in range(times)))

    replies = asyncio.run(tap_accept_at_once(6))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] + [409] * 5, [reply.text for reply in replies]
    assert {reply.json()["error"]["code"] for reply in replies if reply.status_code == 409} == {
        "battle_not_invited"
    }
    for creator in (a, b):
        mine = arena.api.http.get("/v1/me/battle", headers=arena.api.auth(creator, "creator")).json()
        assert mine["battle"] is not None and mine["battle"]["battle_id"] == battle_id
        assert mine["battle"]["state"] == "running"
    # Still in it, both: one battle at a time.
    c, _ = arena.live()
    reply = arena.invite(a, c)
    assert (reply.status_code, reply.json()["error"]["code"]) == (409, "already_in_battle")
    # And it still ends: ending the live forfeits it.
    assert arena.api.end_room(a, room_a).status_code == 200
    assert arena.battle(battle_id)["state"] == "ended"


def test_scores_are_exact_and_a_forfeit_ends_the_battle(arena: Arena) -> None:
    a, room_a = arena.live()
    b, room_b = arena.live()
    fans = arena.fans(3, "us_2650")

    async def run() -> None:
        token = arena.api.token(unique("v"))
        sa = await RoomSocket.open(arena.base_url, room_a, token)
        sb = await RoomSocket.open(arena.base_url, room_b, token)
        assert (await sa.welcome())["battle"] is None
        await sb.welcome()
        # A gift before the battle never counts.
        assert arena.api.gift(fans[0], room_a, "hand_hearts").status_code == 200
        battle = await asyncio.to_thread(start_battle, arena.api, a, b, 300)
        battle_id = battle["battle_id"]
        assert battle["state"] == "running" and battle["ends_at"] - battle["started_ms"] == 300_000
        for socket in (sa, sb):
            start = await wait_scores(socket, battle_id, (0, 0))
            assert start["ends_at"] == battle["ends_at"] and start["state"] == "running"
        expected = [0, 0]
        given = [0, 0, 0]  # each fan's coins to side 0
        plan = [(0, "rose", 3), (1, "doughnut", 2), (2, "hand_hearts", 1), (0, "finger_heart", 4)]
        for i, (fan, gift, count) in enumerate(plan):
            for side, room in enumerate((room_a, room_b)):
                if (i + side) % 2 == 0 or gift == "doughnut":
                    reply = arena.api.gift(fans[fan], room, gift, count)
                    assert reply.status_code == 200, reply.text
                    expected[side] += PRICES[gift] * count
                    given[fan] += PRICES[gift] * count if side == 0 else 0
        want = (expected[0], expected[1])
        for socket in (sa, sb):
            frame = await wait_scores(socket, battle_id, want)
        top = frame["sides"][0]["top"]
        assert [s["coins"] for s in top] == sorted((c for c in given if c), reverse=True)
        # A newcomer's welcome, and the room's snapshot, carry the running battle.
        late = await RoomSocket.open(arena.base_url, room_b, arena.api.token(unique("v")))
        welcome = await late.welcome()
        assert welcome["battle"]["battle_id"] == battle_id
        assert score_frame(welcome["battle"]["sides"]) == want
        snapshot = arena.api.http.get(f"/v1/rooms/{room_b}").json()
        assert snapshot["battle"]["battle_id"] == battle_id
        # A ends their live: the battle ends at once, b wins by forfeit whatever the scores.
        assert arena.api.end_room(a, room_a).status_code == 200
        ended = await sb.wait_for(
            lambda f: any(e["type"] == "battle_end" for e in f.get("events", ())), wait_s=10
        )
        end = next(e for e in ended["events"] if e["type"] == "battle_end")
        assert end["battle_id"] == battle_id
        assert end["winner"] == b and end["forfeit"] == a
        assert end["scores"] == {a: want[0], b: want[1]}
        record = arena.battle(battle_id)
        assert record["state"] == "ended" and record["winner"] == b and record["forfeit"] == a
        assert score_frame(record["sides"]) == want
        # A gift after the end never counts, and battle_end came once.
        assert arena.api.gift(fans[1], room_b, "rose").status_code == 200
        await late.wait_for(lambda f: any(e["type"] == "gift" for e in f.get("events", ())), wait_s=10)
        assert score_frame(arena.battle(battle_id)["sides"]) == want
        assert sum(e["type"] == "battle_end" for e in sb.events()) == 1
        # The room that ended saw the battle's end, then the live's.
        await sa.closed()
        kinds = [e["type"] for e in sa.events() if e["type"] in ("battle_end", "room_end")]
        assert kinds == ["battle_end", "room_end"]
        for socket in (sa, sb, late):
            await socket.close()

    asyncio.run(run())
    arena.audit_ok()


def test_a_battle_event_never_shows_a_score_short_of_the_gifts_the_viewer_was_shown(arena: Arena) -> None:
    """A gift in a running battle is counted before it is published, so a ``battle`` event
    holds every gift its viewer has been shown, in the same batch or before: never a
    score that trails the gifts on screen. Gifts come in bursts from several connections,
    so that many go out together and the hub's ticks carry them."""
    a, room_a = arena.live()
    b, room_b = arena.live()
    fans = arena.fans(4, "us_550")

    async def run() -> None:
        battle_id = (await asyncio.to_thread(start_battle, arena.api, a, b, 300))["battle_id"]
        watcher = await RoomSocket.open(arena.base_url, room_a, arena.api.token(unique("v")))
        assert score_frame((await watcher.welcome())["battle"]["sides"]) == (0, 0)
        senders = [await RoomSocket.open(arena.base_url, room_a, arena.api.token(fan)) for fan in fans]
        for sender in senders:
            await sender.welcome()
        sent = 0
        for _ in range(10):
            for sender in senders:
                mine = [unique("k") for _ in range(8)]
                marks = len(sender.frames)
                sender.send_together(
                    [{"type": "gift", "gift_id": "rose", "count": 1, "idempotency_key": k} for k in mine]
                )
                for k in mine:
                    ack = await sender.answer(k, after=marks)
                    assert ack["type"] == "gift_ack", ack
                sent += len(mine)
        await wait_scores(watcher, battle_id, (sent, 0))
        await watcher.wait_gift_count(sent)
        shown, short = 0, []
        for frame in watcher.frames:
            for event in frame.get("events", ()) if frame["type"] == "batch" else ():
                if event["type"] == "gift":
                    shown += PRICES[event["gift_id"]] * event["count"]
                elif event["type"] == "battle" and score_frame(event["sides"])[0] < shown:
                    short.append((score_frame(event["sides"])[0], shown))
        assert shown == sent and short == [], short
        for socket in (watcher, *senders):
            await socket.close()
        # Ended, so that the audit checks it counted each gift once.
        assert arena.api.end_room(b, room_b).status_code == 200

    asyncio.run(run())
    arena.audit_ok()


def test_a_resume_across_the_start_ends_on_the_current_scores(arena: Arena) -> None:
    a, room_a = arena.live()
    b, _ = arena.live()
    fan = unique("v")
    arena.api.buy(fan)

    async def run() -> None:
        token = arena.api.token(unique("v"))
        first = await RoomSocket.open(arena.base_url, room_a, token)
        welcome = await first.welcome()
        await first.close()
        battle = await asyncio.to_thread(start_battle, arena.api, a, b, 300)
        assert arena.api.gift(fan, room_a, "doughnut", 3).status_code == 200
        # The room as this process shows it holds the new scores (it reads them each tick).
        watcher = await RoomSocket.open(arena.base_url, room_a, arena.api.token(unique("v")))
        seen = (await watcher.welcome())["battle"]
        if score_frame(seen["sides"]) != (90, 0):
            await wait_scores(watcher, battle["battle_id"], (90, 0))
        back = await RoomSocket.open(
            arena.base_url, room_a, token, since=welcome["offset"], epoch=welcome["epoch"]
        )
        again = await back.welcome()
        assert again["resumed"] is True
        assert score_frame(again["battle"]["sides"]) == (90, 0)
        # The catch-up replays the start (scores 0), then brings the scores as they are now.
        await wait_scores(back, battle["battle_id"], (90, 0))
        shown = [score_frame(e["sides"]) for e in back.events("battle")]
        assert shown[0] == (0, 0) and shown[-1] == (90, 0), shown
        for socket in (watcher, back):
            await socket.close()

    asyncio.run(run())


def test_a_battle_over_or_never_run_is_no_longer_looked_up_by_its_rooms_gifts(arena: Arena) -> None:
    """A gift's delivery names the room's battle only if its debit may fall in the battle's
    window: after a battle ended, or once an invitation was declined, the room's gifts make
    no battle call. Published into rooms that ended, so nothing is added to them."""
    a, room_a = arena.live()
    b, _ = arena.live()
    c, room_c = arena.live()
    d, _ = arena.live()
    battle = start_battle(arena.api, a, b, 300)
    assert arena.api.end_room(a, room_a).status_code == 200  # a forfeit
    ended_ms = arena.battle(battle["battle_id"])["ended_ms"]
    invited = arena.invite(c, d).json()
    assert arena.post(d, f"/v1/battles/{invited['battle_id']}/decline").status_code == 200
    assert arena.api.end_room(c, room_c).status_code == 200

    async def named(room_id: str, debit_ms: int) -> str | None:
        credit = CreatorCredit(
            unique("g_"), a, room_id, unique("v"), "rose", 1, 1, 0, debit_ms, debit_ms=debit_ms
        )
        async with Store.from_url(arena.engine_url, KeySchema(arena.prefix)) as store:
            published = await store.rooms.publish_gift(
                credit, sender_name="x", streakable=True, balance=None, combo_window_ms=3000
            )
        assert published.status == "ended"
        return published.battle_id

    async def run() -> None:
        assert await named(room_a, ended_ms - 1) == battle["battle_id"]  # a late delivery still counts
        assert await named(room_a, battle["started_ms"]) == battle["battle_id"]
        assert await named(room_a, ended_ms) is None
        assert await named(room_a, ended_ms + 60_000) is None
        assert await named(room_c, invited["invited_ms"] + 1) is None

    asyncio.run(run())
