"""Follows and shares: two real server processes on one engine, real clients.

The follower count is checked against a model of who follows whom after every change and
under concurrent changes from many users on both processes; the ``follow`` and ``share``
events against what each viewer received (once per user per live, replayed once on resume).
A viewer knows it has received everything up to a point when a sentinel's share, sent after
that point, reaches it: the room's log delivers in order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.keys import KeySchema
from server.store import Store
from tests.conftest import Engine
from tests.support import Api, ServerProcess, delete_prefix, running_server, server_env, unique
from tests.wsclient import Frame, RoomSocket

ENV = {"GIFTING_PRESENCE_TTL_S": "1.5"}  # room state re-read at least every 0.5 s


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    api: Api  # on process a; its tokens hold on b too
    prefix: str
    engine_url: str

    def base(self, which: int) -> str:
        return (self.a, self.b)[which % 2].base_url

    def follow(self, user: str, creator: str, which: int = 0, method: str = "PUT") -> httpx.Response:
        url = f"{self.base(which)}/v1/creators/{creator}/follow"
        return httpx.request(method, url, headers=self.api.auth(user), timeout=10)

    def unfollow(self, user: str, creator: str, which: int = 0) -> httpx.Response:
        return self.follow(user, creator, which, method="DELETE")

    def share(self, user: str, room_id: str, which: int = 0) -> httpx.Response:
        url = f"{self.base(which)}/v1/rooms/{room_id}/share"
        return httpx.post(url, headers=self.api.auth(user), timeout=10)

    def creator(self, creator: str, user: str | None = None) -> dict[str, Any]:
        headers = self.api.auth(user) if user else {}
        reply = self.api.http.get(f"/v1/creators/{creator}", headers=headers)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def following(self, user: str) -> list[str]:
        ids: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            reply = self.api.http.get("/v1/me/following", params=params, headers=self.api.auth(user))
            assert reply.status_code == 200, reply.text
            ids += [row["id"] for row in reply.json()["creators"]]
            cursor = reply.json()["next_cursor"]
            if cursor is None:
                return ids

    def name(self, user: str) -> str:
        name: str = self.api.http.get("/v1/me", headers=self.api.auth(user)).json()["name"]
        return name

    def new_creator(self) -> str:
        creator = unique("c")
        self.api.token(creator, "creator")  # a creator's profile
        return creator

    async def watch(self, room_id: str, which: int = 0, **options: str) -> RoomSocket:
        sock = await RoomSocket.open(self.base(which), room_id, self.api.token(unique("w")), **options)  # type: ignore[arg-type]
        await sock.welcome()
        return sock


@pytest.fixture(scope="module")
def pair(engine: Engine, logs: Path) -> Iterator[Pair]:
    prefix = f"{unique('soc')}:"
    env = server_env(engine.url, prefix, **ENV)
    with (
        running_server(env, logs) as a,
        running_server(env, logs) as b,
        httpx.Client(base_url=a.base_url, timeout=10) as http,
    ):
        yield Pair(a, b, Api(http), prefix, engine.url)
    if not engine.owned:
        delete_prefix(engine.url, prefix)


@pytest.fixture
async def store(pair: Pair) -> AsyncIterator[Store]:
    async with Store.from_url(pair.engine_url, KeySchema(pair.prefix)) as opened:
        yield opened


async def everything_before(pair: Pair, room_id: str, socks: list[RoomSocket]) -> None:
    """Wait until every socket has received every event the room got before this call."""
    sentinel = unique("s")
    assert pair.share(sentinel, room_id).json()["counted"] is True

    def has_it(frame: Frame) -> bool:
        return any(event.get("sender", {}).get("id") == sentinel for event in frame.get("events", ()))

    for sock in socks:
        await sock.wait_for(has_it)


def announced(sock: RoomSocket, kind: str, user: str) -> int:
    return sum(1 for event in sock.events(kind) if event["sender"]["id"] == user)


def last_followers(sock: RoomSocket) -> int:
    """The follower count the socket was last told: by its welcome, or a ``followers`` event."""
    welcome = next(f for f in sock.frames if f["type"] == "welcome")
    counts = [welcome["snapshot"]["followers"]] + [event["followers"] for event in sock.events("followers")]
    return int(counts[-1])


async def followers_shown(sock: RoomSocket, count: int, wait_s: float = 10) -> None:
    """Read until the room's follower count the socket was last told is ``count``."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while last_followers(sock) != count:
        await sock.recv(deadline - asyncio.get_running_loop().time())


# -- follows ----------------------------------------------------------------------------------


def test_following_twice_is_one_follow_and_unfollowing_twice_changes_nothing(pair: Pair) -> None:
    creator, fan = pair.new_creator(), unique("v")
    for which in (0, 1):
        reply = pair.follow(fan, creator, which)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"creator_id": creator, "following": True, "followers": 1}
    assert pair.creator(creator, fan) == {
        "id": creator,
        "name": pair.name(creator),
        "followers": 1,
        "following": True,
        "live_room_id": None,
    }
    assert pair.creator(creator)["following"] is False  # no token: public
    assert pair.following(fan) == [creator]
    for which in (0, 1):
        reply = pair.unfollow(fan, creator, which)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"creator_id": creator, "following": False, "followers": 0}
    assert pair.creator(creator, fan)["following"] is False
    assert pair.following(fan) == []


def test_the_profile_shows_the_live_room_while_live_and_the_list_pages_by_id(pair: Pair) -> None:
    fan = unique("v")
    creators = sorted(pair.new_creator() for _ in range(5))
    for creator in creators:
        assert pair.follow(fan, creator).status_code == 200
    assert pair.following(fan) == creators  # two a page
    room_id = pair.api.open_room(creators[0])
    assert pair.creator(creators[0])["live_room_id"] == room_id
    assert pair.api.end_room(creators[0], room_id).status_code == 200
    assert pair.creator(creators[0])["live_room_id"] is None


def test_bad_ids_yourself_and_users_who_are_no_creators_are_refused_and_change_nothing(pair: Pair) -> None:
    creator, fan, viewer = pair.new_creator(), unique("v"), unique("v")
    pair.api.token(viewer)  # a viewer's profile
    assert pair.follow(fan, creator).status_code == 200
    cases = [
        (pair.follow(creator, creator), 409, "self_follow"),
        (pair.unfollow(creator, creator), 409, "self_follow"),
        (pair.follow(fan, viewer), 404, "creator_not_found"),
        (pair.unfollow(fan, viewer), 404, "creator_not_found"),
        (pair.follow(fan, unique("nobody")), 404, "creator_not_found"),
        (pair.follow(fan, "no{brace}"), 422, "invalid_request"),
        (pair.follow(fan, "x" * 65), 422, "invalid_request"),
        (pair.api.http.put(f"/v1/creators/{creator}/follow"), 401, "unauthorized"),
        (pair.api.http.put(f"/v1/creators/{creator}/follow", headers=pair.api.auth("root", "admin")), 403,
         "forbidden"),
        (pair.api.http.get(f"/v1/creators/{viewer}"), 404, "creator_not_found"),
        (pair.api.http.get(f"/v1/creators/{creator}", headers={"authorization": "Bearer nope"}), 401,
         "unauthorized"),
        (pair.api.http.get("/v1/me/following", params={"cursor": "a b"}, headers=pair.api.auth(fan)), 422,
         "invalid_request"),
        (pair.share(fan, unique("r")), 404, "room_not_found"),
        (pair.share(fan, "bad room"), 422, "invalid_request"),
    ]  # fmt: skip
    for reply, status, code in cases:
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), reply.text
    assert pair.creator(creator, fan)["followers"] == 1
    assert pair.creator(creator, creator)["following"] is False
    assert pair.following(fan) == [creator]
    assert pair.following(creator) == []


def test_the_follower_count_is_exact_under_concurrent_changes_on_two_processes(pair: Pair) -> None:
    creator = pair.new_creator()
    room_id = pair.api.open_room(creator)
    fans = [unique("v") for _ in range(30)]
    plans = {fan: [random.choice(("PUT", "DELETE")) for _ in range(8)] for fan in fans}

    async def run(fan: str) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            for i, method in enumerate(plans[fan]):
                url = f"{pair.base(i + len(fan))}/v1/creators/{creator}/follow"
                reply = await http.request(method, url, headers=pair.api.auth(fan))
                assert reply.status_code == 200, reply.text

    async def all_of_them() -> None:
        await asyncio.gather(*(run(fan) for fan in fans))

    asyncio.run(all_of_them())
    following = {fan for fan, plan in plans.items() if plan[-1] == "PUT"}
    card = pair.creator(creator)
    assert card["followers"] == len(following)
    assert {fan for fan in fans if pair.creator(creator, fan)["following"]} == following
    assert {fan for fan in fans if pair.following(fan) == [creator]} == following

    async def rooms_show_it() -> None:
        socks = [await pair.watch(room_id, which) for which in (0, 1)]
        for sock in socks:
            await followers_shown(sock, len(following))
            await sock.close()

    asyncio.run(rooms_show_it())


@pytest.mark.anyio
async def test_welcome_carries_the_follower_count_and_changes_reach_every_viewer(pair: Pair) -> None:
    creator = pair.new_creator()
    early = [unique("v") for _ in range(2)]
    for fan in early:
        assert pair.follow(fan, creator).status_code == 200
    room_id = pair.api.open_room(creator)
    socks = [await pair.watch(room_id, which) for which in (0, 1)]
    for sock in socks:
        welcome = next(f for f in sock.frames if f["type"] == "welcome")
        assert welcome["snapshot"]["followers"] == 2
    late = unique("v")
    assert pair.follow(late, creator, 1).json()["followers"] == 3
    for sock in socks:
        await followers_shown(sock, 3)
    assert pair.unfollow(early[0], creator).json()["followers"] == 2
    for sock in socks:
        await followers_shown(sock, 2)
        await sock.close()
    reply = pair.api.http.get(f"/v1/rooms/{room_id}")
    assert reply.json()["snapshot"]["followers"] == 2


@pytest.mark.anyio
async def test_a_follow_during_a_live_is_announced_once_per_user_per_live(pair: Pair) -> None:
    creator = pair.new_creator()
    before, fan, other = unique("v"), unique("v"), unique("v")
    assert pair.follow(before, creator).status_code == 200
    room_id = pair.api.open_room(creator)
    socks = [await pair.watch(room_id, which) for which in (0, 1)]
    assert pair.follow(before, creator, 1).status_code == 200  # followed before the live
    assert pair.follow(fan, creator, 0).status_code == 200
    assert pair.follow(fan, creator, 1).status_code == 200  # again
    assert pair.unfollow(fan, creator, 0).status_code == 200
    assert pair.follow(fan, creator, 1).status_code == 200  # and back: no second announcement
    assert pair.follow(other, creator, 1).status_code == 200
    await everything_before(pair, room_id, socks)
    for sock in socks:
        assert announced(sock, "follow", fan) == 1
        assert announced(sock, "follow", other) == 1
        assert announced(sock, "follow", before) == 0
        event = next(e for e in sock.events("follow") if e["sender"]["id"] == fan)
        assert event == {"type": "follow", "sender": {"id": fan, "name": pair.name(fan)}, "ts": event["ts"]}
        await sock.close()
    # The next live announces a follow that begins in it.
    assert pair.api.end_room(creator, room_id).status_code == 200
    room_id = pair.api.open_room(creator)
    sock = await pair.watch(room_id, 1)
    assert pair.unfollow(fan, creator).status_code == 200
    assert pair.follow(fan, creator).status_code == 200
    await everything_before(pair, room_id, [sock])
    assert announced(sock, "follow", fan) == 1
    await sock.close()


@pytest.mark.anyio
async def test_a_retried_follow_announces_what_a_crash_left_unannounced(pair: Pair, store: Store) -> None:
    creator = pair.new_creator()
    room_id = pair.api.open_room(creator)
    sock = await pair.watch(room_id)
    fan = unique("v")
    # The follow reached the creator's slot, and then the process died before the room.
    change = await store.social.follow(creator, fan)
    assert change.changed and change.live_room_id == room_id
    assert pair.follow(fan, creator).json()["followers"] == 1  # the client's retry
    assert pair.follow(fan, creator, 1).json()["followers"] == 1
    await everything_before(pair, room_id, [sock])
    assert announced(sock, "follow", fan) == 1
    await sock.close()


@pytest.mark.anyio
async def test_the_list_of_creators_followed_leaves_out_what_a_crash_left_in_it(
    pair: Pair, store: Store
) -> None:
    followed, dropped, fan = pair.new_creator(), pair.new_creator(), unique("v")
    assert pair.follow(fan, followed).status_code == 200
    # A follow that died after its first write, and an unfollow after its first.
    await store.social.list_creator(fan, dropped)
    assert pair.following(fan) == [followed]
    assert pair.follow(fan, dropped).status_code == 200
    assert (await store.social.unfollow(dropped, fan)).changed
    assert pair.following(fan) == [followed]
    assert pair.creator(dropped)["followers"] == 0


@pytest.mark.anyio
async def test_a_room_keeps_the_newest_count_whatever_order_the_copies_arrive_in(
    pair: Pair, store: Store
) -> None:
    creator = pair.new_creator()
    room_id = pair.api.open_room(creator)
    await store.social.tell_room(room_id, followers=7, version=5)
    await store.social.tell_room(room_id, followers=6, version=4)  # an older change, late
    state = await store.rooms.state(room_id)
    assert state is not None and state.followers == 7


# -- shares -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_flood_of_shares_from_one_user_on_two_processes_is_announced_once(pair: Pair) -> None:
    creator = pair.new_creator()
    room_id = pair.api.open_room(creator)
    socks = [await pair.watch(room_id, which) for which in (0, 1)]
    sharer, second = unique("v"), unique("v")

    async def share(http: httpx.AsyncClient, which: int) -> bool:
        reply = await http.post(f"{pair.base(which)}/v1/rooms/{room_id}/share", headers=pair.api.auth(sharer))
        assert reply.status_code == 200, reply.text
        counted: bool = reply.json()["counted"]
        return counted

    async with httpx.AsyncClient(timeout=30) as http:
        counted = await asyncio.gather(*(share(http, i) for i in range(40)))
    assert sorted(counted) == [False] * 39 + [True]
    assert pair.share(second, room_id, 1).json() == {"room_id": room_id, "counted": True}
    await everything_before(pair, room_id, socks)
    for sock in socks:
        assert announced(sock, "share", sharer) == 1
        assert announced(sock, "share", second) == 1
        await sock.close()
    assert pair.api.end_room(creator, room_id).status_code == 200
    reply = pair.share(sharer, room_id)
    assert (reply.status_code, reply.json()["error"]["code"]) == (409, "room_ended")


# -- resume -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_resume_replays_follows_and_shares_exactly_once(pair: Pair) -> None:
    creator = pair.new_creator()
    room_id = pair.api.open_room(creator)
    sock = await pair.watch(room_id)
    welcome = sock.frames[-1]
    await sock.close()
    fan, sharer = unique("v"), unique("v")
    assert pair.follow(fan, creator, 1).status_code == 200
    assert pair.share(sharer, room_id, 1).json()["counted"] is True
    assert pair.unfollow(fan, creator).status_code == 200
    assert pair.follow(fan, creator).status_code == 200
    resumed = await pair.watch(room_id, 0, since=welcome["offset"], epoch=welcome["epoch"])
    assert resumed.frames[-1]["resumed"] is True
    await everything_before(pair, room_id, [resumed])
    await everything_before(pair, room_id, [resumed])  # and nothing comes again after it
    assert announced(resumed, "follow", fan) == 1
    assert announced(resumed, "share", sharer) == 1
    order = [(e["type"], e["sender"]["id"]) for e in resumed.events() if e["type"] in ("follow", "share")]
    assert order[:2] == [("follow", fan), ("share", sharer)]
    await resumed.close()


# -- the count against a model ----------------------------------------------------------------

FANS = 4


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, FANS - 1), st.booleans(), st.integers(0, 1)), max_size=14))
def test_any_sequence_of_follows_and_unfollows_ends_at_the_models_count(
    pair: Pair, steps: list[tuple[int, bool, int]]
) -> None:
    creator = pair.new_creator()
    fans = [f"{creator}f{i}" for i in range(FANS)]
    model: set[str] = set()
    for index, follows, which in steps:
        fan = fans[index]
        reply = pair.follow(fan, creator, which) if follows else pair.unfollow(fan, creator, which)
        assert reply.status_code == 200, reply.text
        (model.add if follows else model.discard)(fan)
        assert reply.json() == {"creator_id": creator, "following": follows, "followers": len(model)}
    assert pair.creator(creator)["followers"] == len(model)
    assert {fan for fan in fans if pair.creator(creator, fan)["following"]} == model
    assert {fan for fan in fans if pair.following(fan)} == model
