"""Moderation: deleting chat messages out of the history and resumes, mutes, bans that close
the user's sockets on every server process and refuse their chat and gifts, who may
moderate whom, and the creator's moderation log; on real servers and a real engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.keys import KeySchema
from tests.conftest import Engine
from tests.support import Api, ServerProcess, engine_client, running_server, server_env, unique
from tests.test_chat import chat, moderator, posted, socket
from tests.wsclient import RoomSocket

BANNED_CLOSE = 4403


def act(api: Api, actor: str, method: str, path: str, role: str = "viewer", **body: Any) -> httpx.Response:
    return api.http.request(method, path, headers=api.auth(actor, role), json=body or None)


def delete(api: Api, actor: str, room_id: str, event_id: str, role: str = "creator") -> httpx.Response:
    return act(api, actor, "DELETE", f"/v1/rooms/{room_id}/chat/{event_id}", role)


def mute(
    api: Api, actor: str, room_id: str, user: str, seconds: int, role: str = "creator"
) -> httpx.Response:
    return act(api, actor, "PUT", f"/v1/rooms/{room_id}/mutes/{user}", role, seconds=seconds)


def ban(
    api: Api, actor: str, room_id: str, user: str, method: str = "PUT", role: str = "creator"
) -> httpx.Response:
    return act(api, actor, method, f"/v1/rooms/{room_id}/bans/{user}", role)


def moderation_log(api: Api, creator: str, **params: Any) -> dict[str, Any]:
    reply = api.http.get("/v1/creator/moderation-log", params=params, headers=api.auth(creator, "creator"))
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def error_code(reply: httpx.Response) -> str:
    code: str = reply.json()["error"]["code"]
    return code


def holds(event_id: str) -> Any:
    return lambda f: any(e.get("event_id") == event_id for e in f.get("events", ()))


# -- delete -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_deleted_message_reaches_viewers_as_chat_deleted_and_never_reappears(
    api: Api, server: ServerProcess, room: tuple[str, str]
) -> None:
    creator, room_id = room
    watcher = unique("v")
    ws = await socket(server, api, room_id, watcher)
    welcome = ws.frames[0]
    gone = posted(api, unique("v"), room_id, "delete me")["event_id"]
    kept = posted(api, unique("v"), room_id, "keep me")["event_id"]
    await ws.wait_for(holds(kept))

    assert delete(api, creator, room_id, gone).status_code == 204
    batch = await ws.wait_event({"type": "chat_deleted", "event_id": gone})
    assert delete(api, creator, room_id, gone).status_code == 204  # again: nothing more
    missing = delete(api, creator, room_id, "c_nosuchmessage")
    assert missing.status_code == 404 and error_code(missing) == "message_not_found"

    # Not in a new welcome's recent chat.
    fresh = await socket(server, api, room_id, unique("v"))
    assert [m["event_id"] for m in fresh.frames[0]["recent_chat"]] == [kept]
    # Not in the catch-up of a resume from before it was posted: only its deletion is.
    back = await socket(server, api, room_id, watcher, since=welcome["offset"], epoch=welcome["epoch"])
    assert back.frames[0]["resumed"] is True
    after = posted(api, unique("v"), room_id, "after")["event_id"]
    await back.wait_for(holds(after))
    assert [e["event_id"] for e in back.events("chat")] == [kept, after]
    assert back.events("chat_deleted") == [{"type": "chat_deleted", "event_id": gone}]
    # And a resume from after the delete gets neither.
    again = await socket(server, api, room_id, watcher, since=batch["offset"], epoch=welcome["epoch"])
    assert gone not in [m["event_id"] for m in again.frames[0]["recent_chat"]]
    # The second delete added no second event.
    assert ws.events("chat_deleted") == [{"type": "chat_deleted", "event_id": gone}]
    for client in (ws, fresh, back, again):
        await client.close()


# -- who may moderate whom ----------------------------------------------------------------


def test_moderators_act_until_removed_and_nobody_else_can(api: Api, room: tuple[str, str]) -> None:
    creator, room_id = room
    mod, other_mod, viewer, target = unique("m"), unique("m"), unique("v"), unique("v")
    for user in (mod, other_mod):
        assert moderator(api, creator, user).status_code == 204
    message = posted(api, target, room_id, "hello")["event_id"]

    # A viewer who is no moderator: refused every action, and nothing changes.
    for reply in (
        delete(api, viewer, room_id, message, role="viewer"),
        mute(api, viewer, room_id, target, 60, role="viewer"),
        ban(api, viewer, room_id, target, role="viewer"),
        ban(api, viewer, room_id, target, "DELETE", role="viewer"),
    ):
        assert reply.status_code == 403 and error_code(reply) == "forbidden", reply.text
    assert chat(api, target, room_id, "still here").status_code == 201

    # A moderator moderates viewers, but not the creator or another moderator.
    assert mute(api, mod, room_id, target, 60, role="viewer").status_code == 204
    for reply in (
        ban(api, mod, room_id, creator, role="viewer"),
        mute(api, mod, room_id, creator, 60, role="viewer"),
        ban(api, mod, room_id, other_mod, role="viewer"),
        mute(api, mod, room_id, other_mod, 60, role="viewer"),
    ):
        assert reply.status_code == 403 and error_code(reply) == "forbidden", reply.text
    assert chat(api, other_mod, room_id, "moderators still chat").status_code == 201
    # Nor can the creator mute or ban themselves.
    assert ban(api, creator, room_id, creator).status_code == 403

    # Removed mid-live: the very next action is refused.
    assert moderator(api, creator, mod, "DELETE").status_code == 204
    refused = act(api, mod, "DELETE", f"/v1/rooms/{room_id}/mutes/{target}")
    assert refused.status_code == 403 and error_code(refused) == "forbidden"
    assert error_code(chat(api, target, room_id, "muted still")) == "muted"


def test_bad_moderation_requests_get_a_clear_error_and_change_nothing(
    api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    target = unique("v")
    for body in (
        {},
        {"seconds": 0},
        {"seconds": 86_401},
        {"seconds": "60"},
        {"seconds": 1.5},
        {"seconds": 60, "x": 1},
    ):
        reply = api.http.put(
            f"/v1/rooms/{room_id}/mutes/{target}", json=body, headers=api.auth(creator, "creator")
        )
        assert reply.status_code == 422 and error_code(reply) == "invalid_request", (body, reply.text)
    assert mute(api, creator, "r_nosuchroom", target, 60).status_code == 404
    assert error_code(ban(api, creator, "r_nosuchroom", target)) == "room_not_found"
    assert delete(api, creator, room_id, "bad id!").status_code == 422
    assert chat(api, target, room_id, "never muted").status_code == 201
    assert moderation_log(api, creator)["entries"] == []


# -- mute ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_muted_user_is_refused_with_the_wait_until_it_ends_and_can_still_gift(
    api: Api, server: ServerProcess, room: tuple[str, str]
) -> None:
    creator, room_id = room
    target = unique("v")
    api.buy(target)
    assert mute(api, creator, room_id, target, 2).status_code == 204
    muted_at = time.monotonic()
    refused = chat(api, target, room_id, "let me talk")
    assert refused.status_code == 429 and error_code(refused) == "muted"
    assert 1 <= int(refused.headers["retry-after"]) <= 2
    ws = await socket(server, api, room_id, target)
    await ws.send({"type": "chat", "text": "over the socket", "client_id": "m-muted"})
    error = await ws.wait_for(lambda f: f["type"] == "error")
    assert error["code"] == "muted" and error["client_id"] == "m-muted"
    assert 0 < error["retry_after_ms"] <= 2000
    # Still watching and gifting, over the socket and HTTP.
    ack = await ws.gift("rose")
    assert ack["type"] == "gift_ack", ack
    gift = api.gift(target, room_id, "rose")
    assert gift.status_code == 200, gift.text
    assert api.coins(target) == 550 - 2 * gift.json()["cost"]

    # The mute ends by itself.
    deadline = time.monotonic() + 10
    while (reply := chat(api, target, room_id, "free again")).status_code != 201:
        assert error_code(reply) == "muted" and time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert time.monotonic() - muted_at >= 1.5
    # And an unmute ends one at once.
    assert mute(api, creator, room_id, target, 3600).status_code == 204
    assert error_code(chat(api, target, room_id, "muted")) == "muted"
    assert act(api, creator, "DELETE", f"/v1/rooms/{room_id}/mutes/{target}", "creator").status_code == 204
    assert chat(api, target, room_id, "unmuted").status_code == 201
    await ws.close()


# -- ban across two server processes ---------------------------------------------------------


@pytest.fixture(scope="module")
def pair(engine: Engine, key_prefix: str, logs: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = server_env(engine.url, key_prefix)
    with running_server(env, logs) as a, running_server(env, logs) as b:
        yield a, b


async def refused_on_connect(server: ServerProcess, api: Api, room_id: str, user: str) -> None:
    ws = await RoomSocket.open(server.base_url, room_id, api.token(user))
    first = await ws.recv()
    assert first["type"] == "error" and first["code"] == "banned", first
    assert await ws.closed() == (BANNED_CLOSE, "banned")


@pytest.mark.anyio
async def test_a_ban_closes_the_users_sockets_on_every_process_and_holds_in_the_next_live(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    with (
        httpx.Client(base_url=a.base_url, timeout=10) as http_a,
        httpx.Client(base_url=b.base_url, timeout=10) as http_b,
    ):
        api_a, api_b = Api(http_a), Api(http_b)
        creator, target, watcher = unique("c"), unique("v"), unique("v")
        room_id = api_a.open_room(creator)
        api_a.buy(target)
        on_a = await socket(a, api_a, room_id, target)
        on_b = await socket(b, api_b, room_id, target)
        watching = await socket(b, api_b, room_id, watcher)

        assert ban(api_a, creator, room_id, target).status_code == 204
        for ws in (on_a, on_b):
            closed = await ws.closed()
            assert closed == (BANNED_CLOSE, "banned")
            assert ws.frames[-1]["type"] == "error" and ws.frames[-1]["code"] == "banned"
        await refused_on_connect(b, api_b, room_id, target)
        await refused_on_connect(a, api_a, room_id, target)
        gift = api_b.gift(target, room_id, "rose")
        assert gift.status_code == 403 and error_code(gift) == "banned"
        assert api_a.coins(target) == 550  # nothing debited
        refused = chat(api_b, target, room_id, "let me in")
        assert refused.status_code == 403 and error_code(refused) == "banned"
        assert ban(api_b, creator, room_id, target).status_code == 204  # again: the same
        bans = api_a.http.get("/v1/creator/bans", headers=api_a.auth(creator, "creator"))
        assert bans.json() == {"bans": [{"id": target, "name": api_a.me(target)["name"]}]}
        # The others watch on, and never see the ban itself.
        marker = posted(api_a, watcher, room_id, "still live")["event_id"]
        await watching.wait_for(holds(marker))
        assert [e for e in watching.events() if e["type"] not in ("chat", "viewers", "joins")] == []

        # The creator's next live: still banned.
        assert api_a.end_room(creator, room_id).status_code == 200
        await watching.closed()
        next_room = api_b.open_room(creator)
        await refused_on_connect(a, api_a, next_room, target)
        assert error_code(api_a.gift(target, next_room, "rose")) == "banned"
        assert api_b.coins(target) == 550

        # Unbanned: connects, chats and gifts again.
        assert ban(api_a, creator, next_room, target, "DELETE").status_code == 204
        back = await socket(b, api_b, next_room, target)
        assert api_b.http.get("/v1/creator/bans", headers=api_b.auth(creator, "creator")).json() == {
            "bans": []
        }
        assert chat(api_a, target, next_room, "thanks").status_code == 201
        gift = api_b.gift(target, next_room, "rose")
        assert gift.status_code == 200, gift.text
        assert api_a.coins(target) == 550 - gift.json()["cost"]
        await back.close()


@pytest.mark.anyio
async def test_a_mute_set_through_one_process_holds_on_the_other(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    with (
        httpx.Client(base_url=a.base_url, timeout=10) as http_a,
        httpx.Client(base_url=b.base_url, timeout=10) as http_b,
    ):
        api_a, api_b = Api(http_a), Api(http_b)
        creator, target = unique("c"), unique("v")
        room_id = api_a.open_room(creator)
        ws = await socket(b, api_b, room_id, target)
        assert mute(api_a, creator, room_id, target, 600).status_code == 204
        refused = chat(api_b, target, room_id, "through b")
        assert refused.status_code == 429 and error_code(refused) == "muted"
        assert 590 <= int(refused.headers["retry-after"]) <= 600
        await ws.send({"type": "chat", "text": "over b's socket", "client_id": "m-b"})
        error = await ws.wait_for(lambda f: f["type"] == "error")
        assert error["code"] == "muted" and 590_000 < error["retry_after_ms"] <= 600_000
        assert (
            act(api_b, creator, "DELETE", f"/v1/rooms/{room_id}/mutes/{target}", "creator").status_code == 204
        )
        assert chat(api_a, target, room_id, "through a").status_code == 201
        await ws.close()


# -- the moderation log ---------------------------------------------------------------------


def test_the_log_lists_every_action_newest_first_in_pages(api: Api, room: tuple[str, str]) -> None:
    creator, room_id = room
    mod, target = unique("m"), unique("v")
    assert moderator(api, creator, mod).status_code == 204
    message = posted(api, target, room_id, "rude")["event_id"]
    assert delete(api, mod, room_id, message, role="viewer").status_code == 204
    assert delete(api, mod, room_id, message, role="viewer").status_code == 204  # not logged twice
    assert mute(api, mod, room_id, target, 300, role="viewer").status_code == 204
    assert act(api, creator, "DELETE", f"/v1/rooms/{room_id}/mutes/{target}", "creator").status_code == 204
    assert ban(api, mod, room_id, target, role="viewer").status_code == 204
    assert ban(api, creator, room_id, target, "DELETE").status_code == 204
    assert moderator(api, creator, mod, "DELETE").status_code == 204

    expected = [
        {"action": "remove_moderator", "actor": creator, "target": mod, "room_id": None},
        {"action": "unban", "actor": creator, "target": target, "room_id": room_id},
        {"action": "ban", "actor": mod, "target": target, "room_id": room_id},
        {"action": "unmute", "actor": creator, "target": target, "room_id": room_id},
        {"action": "mute", "actor": mod, "target": target, "room_id": room_id, "seconds": 300},
        {"action": "delete", "actor": mod, "target": target, "room_id": room_id, "event_id": message},
        {"action": "add_moderator", "actor": creator, "target": mod, "room_id": None},
    ]
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = moderation_log(api, creator, **params)
        entries += page["entries"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [{k: v for k, v in e.items() if k != "ts"} for e in entries] == expected
    stamps = [e["ts"] for e in entries]
    assert stamps == sorted(stamps, reverse=True) and all(isinstance(ts, int) for ts in stamps)
    # The creator's alone.
    other = api.http.get("/v1/creator/moderation-log", headers=api.auth(mod, "viewer"))
    assert other.status_code == 403
    assert moderation_log(api, unique("c"))["entries"] == []


def test_the_ids_a_delete_finds_are_bounded_to_the_last_messages_of_a_long_live(
    engine: Engine, key_prefix: str, logs: Path
) -> None:
    # A log of 100 entries: the ids of the last 100 to 200 messages are kept, never more.
    env = server_env(engine.url, key_prefix, GIFTING_ROOM_STREAM_LEN="100")
    with running_server(env, logs) as process, httpx.Client(base_url=process.base_url, timeout=10) as http:
        api = Api(http)
        creator = unique("c")
        room_id = api.open_room(creator)
        ids = [posted(api, unique("v"), room_id, f"message {i}")["event_id"] for i in range(250)]
        room = KeySchema(key_prefix).room(room_id)
        with engine_client(engine.url) as client:
            kept = client.hlen(room.chat_ids) + client.hlen(room.chat_ids_old)
        assert 100 <= kept <= 200
        gone = delete(api, creator, room_id, ids[0])
        assert gone.status_code == 404 and error_code(gone) == "message_not_found"
        # The newest, and the oldest of the previous generation, are found.
        assert delete(api, creator, room_id, ids[-1]).status_code == 204
        assert delete(api, creator, room_id, ids[-kept]).status_code == 204
        assert [e["action"] for e in moderation_log(api, creator)["entries"]] == ["delete", "delete"]
