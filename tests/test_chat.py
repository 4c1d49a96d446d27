"""Chat: posting over HTTP and the room socket, its text rules, idempotency, the chat rate
across processes, slow mode, blocked words, links, badges, the welcome's recent chat and
resume, and the creator's moderators and chat settings; on real servers and a real engine.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from server.domain.chat import (
    BIDI_CONTROLS,
    MAX_LENGTH,
    MAX_RAW_LENGTH,
    masked,
    refused_character,
    sanitised,
)
from server.errors import InvalidRequest
from server.keys import KeySchema
from tests.conftest import Engine
from tests.support import Api, ServerProcess, engine_client, running_server, server_env, unique
from tests.test_metrics import scrape
from tests.wsclient import JSON, MSGPACK, RoomSocket

XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "{{constructor.constructor('alert(1)')()}}",
    "&lt;b&gt; &amp; <b>bold</b>",
]
# Text that a message may hold: letters of several scripts, marks, emoji, symbols, spaces.
TEXT = st.text(
    alphabet=st.characters(codec="utf-8"),
    max_size=MAX_RAW_LENGTH,
)


def assert_clean(text: str) -> None:
    """What every stored or broadcast message obeys."""
    assert unicodedata.is_normalized("NFC", text), text
    assert text == text.strip()
    assert 1 <= len(text) <= MAX_LENGTH
    assert refused_character(text) is None
    assert masked(text) == text  # nothing left to mask


def chat(
    api: Api, user: str, room_id: str, text: str, client_id: str | None = None, role: str = "viewer"
) -> httpx.Response:
    body = {"text": text, "client_id": client_id or unique("m")}
    return api.http.post(f"/v1/rooms/{room_id}/chat", json=body, headers=api.auth(user, role))


def posted(api: Api, user: str, room_id: str, text: str, role: str = "viewer") -> dict[str, Any]:
    reply = chat(api, user, room_id, text, role=role)
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def chat_log(engine: Engine, key_prefix: str, room_id: str) -> list[dict[str, str]]:
    """The chat entries of the room's log, oldest first, as the engine holds them."""
    with engine_client(engine.url) as client:
        entries = client.xrange(KeySchema(key_prefix).room(room_id).events)
    return [fields for _, fields in entries if fields.get("t") == "chat"]


def creator_settings(api: Api, creator: str, **body: Any) -> httpx.Response:
    return api.http.put("/v1/creator/chat-settings", json=body, headers=api.auth(creator, "creator"))


def moderator(api: Api, creator: str, user: str, method: str = "PUT") -> httpx.Response:
    return api.http.request(method, f"/v1/creator/moderators/{user}", headers=api.auth(creator, "creator"))


async def socket(server: ServerProcess, api: Api, room_id: str, user: str, **options: Any) -> RoomSocket:
    ws = await RoomSocket.open(server.base_url, room_id, api.token(user), **options)
    await ws.welcome()
    return ws


# -- the text rules, apart from any I/O ----------------------------------------------------


@settings(max_examples=2000)
@given(text=TEXT | st.text(max_size=200))
def test_any_text_is_either_refused_as_invalid_or_made_clean(text: str) -> None:
    try:
        clean = masked(sanitised(text))
    except InvalidRequest as exc:
        assert exc.code == "invalid_request" and exc.message
    else:
        assert_clean(clean)


@pytest.mark.parametrize("bad", [*sorted(BIDI_CONTROLS), "\x00", "\x07", "\x1b", "\x7f", "\u2028", "a\nb"])
def test_control_and_bidi_characters_are_refused_with_a_clear_message(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="control or bidi-override"):
        sanitised(f"hello {bad} world")


def test_text_is_nfc_normalised_trimmed_and_bounded_in_characters_not_bytes() -> None:
    assert sanitised("  cafe\u0301 \t") == "caf\u00e9"
    assert sanitised("é" * MAX_LENGTH) == "é" * MAX_LENGTH  # 300 bytes, 150 characters
    for text in ("", "   ", "x" * (MAX_LENGTH + 1)):
        with pytest.raises(InvalidRequest, match="1 to 150 characters"):
            sanitised(text)


def test_profanity_is_masked_and_a_masked_message_stays_within_the_length() -> None:
    assert masked("what the shit is this") == "what the **** is this"
    full = "ass " * 37 + "ok"  # 150 characters; each 3-letter word becomes 4 stars
    assert len(full) == MAX_LENGTH
    assert_clean(masked(full))


# -- posting ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_message_reaches_the_room_sanitised_and_the_sender_gets_its_ack(
    api: Api, server: ServerProcess, room: tuple[str, str]
) -> None:
    _, room_id = room
    sender, watcher = unique("v"), unique("v")
    ws = await socket(server, api, room_id, watcher)
    body = posted(api, sender, room_id, "  Cafe\u0301 shit!  ")
    assert set(body) == {"client_id", "event_id"}
    event = await ws.wait_for(
        lambda f: any(e.get("event_id") == body["event_id"] for e in f.get("events", ()))
    )
    [chat_event] = [e for e in event["events"] if e.get("event_id") == body["event_id"]]
    assert chat_event["type"] == "chat"
    assert chat_event["text"] == "Caf\u00e9 ****!"
    assert chat_event["sender"] == {"id": sender, "name": api.me(sender)["name"], "badges": []}
    assert isinstance(chat_event["ts"], int)

    # Over the socket: the same rules, answered to the sender only.
    ws_sender = await socket(server, api, room_id, sender)
    await ws_sender.send({"type": "chat", "text": "from the socket", "client_id": "m-ws-1"})
    ack = await ws_sender.wait_for(lambda f: f["type"] in ("chat_ack", "error"))
    assert ack["type"] == "chat_ack" and ack["client_id"] == "m-ws-1" and ack["event_id"].startswith("c_")
    await ws_sender.send({"type": "chat", "text": "  ", "client_id": "m-ws-2"})
    error = await ws_sender.wait_for(lambda f: f["type"] == "error")
    assert error["code"] == "invalid_request" and error["client_id"] == "m-ws-2"
    await ws.close()
    await ws_sender.close()


@pytest.mark.parametrize("payload", XSS)
def test_markup_is_stored_as_the_text_it_is(
    api: Api, engine: Engine, key_prefix: str, room: tuple[str, str], payload: str
) -> None:
    _, room_id = room
    posted(api, unique("v"), room_id, payload)
    [entry] = chat_log(engine, key_prefix, room_id)
    assert entry["x"] == payload


def test_a_resend_with_the_same_client_id_posts_once_and_gets_the_first_answer(
    api: Api, engine: Engine, key_prefix: str, room: tuple[str, str]
) -> None:
    _, room_id = room
    sender = unique("v")
    first = chat(api, sender, room_id, "only once", "m-resend")
    again = chat(api, sender, room_id, "only once", "m-resend")
    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = chat(api, sender, room_id, "another text", "m-resend")
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_mismatch"
    assert [e["x"] for e in chat_log(engine, key_prefix, room_id)] == ["only once"]


@pytest.mark.anyio
async def test_a_frame_resent_on_a_new_connection_after_a_drop_posts_once(
    api: Api, server: ServerProcess, engine: Engine, key_prefix: str, room: tuple[str, str]
) -> None:
    _, room_id = room
    sender = unique("v")
    frame = {"type": "chat", "text": "sent twice", "client_id": "m-drop"}
    answers = []
    for subprotocol in (JSON, MSGPACK):  # the second connection speaks the other encoding
        ws = await socket(server, api, room_id, sender, subprotocol=subprotocol)
        await ws.send(frame)
        answers.append(await ws.wait_for(lambda f: f["type"] in ("chat_ack", "error")))
        await ws.close()
    assert answers[0]["type"] == "chat_ack" and answers[1] == answers[0]
    assert [e["x"] for e in chat_log(engine, key_prefix, room_id)] == ["sent twice"]


def test_a_post_after_the_engine_lost_its_scripts_loads_them_again(
    api: Api, engine: Engine, key_prefix: str, room: tuple[str, str], needs_own_engine: None
) -> None:
    _, room_id = room
    with engine_client(engine.url) as client:
        client.script_flush()
    posted(api, unique("v"), room_id, "after a flush")
    assert [e["x"] for e in chat_log(engine, key_prefix, room_id)] == ["after a flush"]


def test_bad_bodies_get_a_clear_error_and_post_nothing(
    api: Api, engine: Engine, key_prefix: str, room: tuple[str, str]
) -> None:
    _, room_id = room
    sender = unique("v")
    for body in (
        {"text": "hi"},
        {"client_id": "m-1"},
        {"text": 5, "client_id": "m-1"},
        {"text": "hi", "client_id": "has space"},
        {"text": "hi", "client_id": "m-1", "extra": 1},
        {"text": "x" * (MAX_RAW_LENGTH + 1), "client_id": "m-1"},
        {"text": "a\u202eb", "client_id": "m-1"},
    ):
        reply = api.http.post(f"/v1/rooms/{room_id}/chat", json=body, headers=api.auth(sender))
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", reply.text
    assert chat_log(engine, key_prefix, room_id) == []
    nowhere = chat(api, sender, "r_nowhere", "hello")
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "room_not_found"
    admin = api.http.post(
        f"/v1/rooms/{room_id}/chat",
        json={"text": "hi", "client_id": "m-2"},
        headers=api.auth(sender, "admin"),
    )
    assert admin.status_code == 403


def test_an_ended_live_refuses_chat_but_answers_a_resend_of_a_message_it_took(
    api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    sender = unique("v")
    first = chat(api, sender, room_id, "before the end", "m-end")
    assert api.end_room(creator, room_id).status_code == 200
    late = chat(api, sender, room_id, "after the end")
    assert late.status_code == 409 and late.json()["error"]["code"] == "room_ended"
    resend = chat(api, sender, room_id, "before the end", "m-end")
    assert resend.status_code == 200 and resend.json() == first.json()


@pytest.mark.anyio
async def test_an_overlay_cannot_chat(api: Api, server: ServerProcess, room: tuple[str, str]) -> None:
    creator, room_id = room
    token = api.http.get("/v1/creator/overlay", headers=api.auth(creator, "creator")).json()["token"]
    ws = await RoomSocket.open(server.base_url, room_id, None, path=f"/v1/overlay/{token}/ws")
    await ws.welcome()
    await ws.send({"type": "chat", "text": "hello", "client_id": "m-overlay"})
    error = await ws.wait_for(lambda f: f["type"] == "error")
    assert error["code"] == "forbidden" and error["client_id"] == "m-overlay"
    await ws.close()


# -- the chat rate ------------------------------------------------------------------------


def test_a_flood_hits_the_rate_limit_and_posts_nothing_more(
    api: Api, server: ServerProcess, engine: Engine, key_prefix: str, room: tuple[str, str]
) -> None:
    _, room_id = room
    sender = unique("v")
    before = scrape(server)
    replies = [chat(api, sender, room_id, f"flood {i}") for i in range(30)]
    accepted = [r for r in replies if r.status_code == 201]
    refused = [r for r in replies if r.status_code == 429]
    assert len(accepted) + len(refused) == 30
    # A burst of 5, and at 1 message a second at most a token or two more while it runs.
    assert 5 <= len(accepted) <= 7
    for reply in refused:
        error = reply.json()["error"]
        assert error["code"] == "rate_limited" and reply.headers["retry-after"]
    assert len(chat_log(engine, key_prefix, room_id)) == len(accepted)
    after = scrape(server)
    for outcome, count in (("posted", len(accepted)), ("rate_limited", len(refused))):
        assert after.since(before, "gifting_chat_messages_total", transport="http", outcome=outcome) == count


@pytest.fixture(scope="module")
def pair(engine: Engine, key_prefix: str, logs: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # A token every 1000 s: the burst is all a test can post.
    env = server_env(engine.url, key_prefix, GIFTING_CHAT_RATE_PER_S="0.001", GIFTING_CHAT_BURST="4")
    with running_server(env, logs) as a, running_server(env, logs) as b:
        yield a, b


def test_two_server_processes_share_one_chat_rate_per_user(
    pair: tuple[ServerProcess, ServerProcess], engine: Engine, key_prefix: str
) -> None:
    a, b = pair
    with (
        httpx.Client(base_url=a.base_url, timeout=10) as on_a,
        httpx.Client(base_url=b.base_url, timeout=10) as on_b,
    ):
        apis = (Api(on_a), Api(on_b))
        room_id = apis[0].open_room(unique("c"))
        sender = unique("v")
        codes = [chat(apis[i % 2], sender, room_id, f"turn {i}").status_code for i in range(8)]
    assert codes == [201] * 4 + [429] * 4
    assert len(chat_log(engine, key_prefix, room_id)) == 4


# -- the creator's rules ------------------------------------------------------------------


def test_slow_mode_refuses_a_second_message_within_the_wait_but_not_the_creator_or_moderators(
    api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    viewer, mod = unique("v"), unique("v")
    assert creator_settings(api, creator, slow_mode_s=30).status_code == 200
    assert moderator(api, creator, mod).status_code == 204
    posted(api, viewer, room_id, "first")
    second = chat(api, viewer, room_id, "second")
    assert second.status_code == 429
    error = second.json()["error"]
    assert error["code"] == "slow_mode"
    assert 0 < int(second.headers["retry-after"]) <= 30
    for user, role in ((creator, "creator"), (mod, "viewer")):
        posted(api, user, room_id, "one", role=role)
        posted(api, user, room_id, "two", role=role)
    # Slow mode off: the wait is gone at once.
    assert creator_settings(api, creator, slow_mode_s=0).status_code == 200
    posted(api, viewer, room_id, "third")


@pytest.mark.anyio
async def test_slow_mode_refusal_over_the_socket_carries_the_wait(
    api: Api, server: ServerProcess, room: tuple[str, str]
) -> None:
    creator, room_id = room
    viewer = unique("v")
    assert creator_settings(api, creator, slow_mode_s=60).status_code == 200
    ws = await socket(server, api, room_id, viewer)
    await ws.send({"type": "chat", "text": "one", "client_id": "m-s1"})
    await ws.wait_for(lambda f: f["type"] == "chat_ack")
    await ws.send({"type": "chat", "text": "two", "client_id": "m-s2"})
    error = await ws.wait_for(lambda f: f["type"] == "error")
    assert error["code"] == "slow_mode" and error["client_id"] == "m-s2"
    assert 0 < error["retry_after_ms"] <= 60_000
    await ws.close()


def test_blocked_words_refuse_whole_words_whatever_their_case(
    api: Api, engine: Engine, key_prefix: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    viewer = unique("v")
    reply = creator_settings(api, creator, blocked_words=["Spoiler", "Straße", "bad word"])
    assert reply.json()["blocked_words"] == ["spoiler", "strasse", "bad word"]
    for text in ("SPOILER ahead", "the STRASSE", "a Bad Word here", "spoiler!"):
        refused = chat(api, viewer, room_id, text)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "message_blocked", text
    for text in ("spoilers are fine", "badword"):
        posted(api, viewer, room_id, text)
    assert [e["x"] for e in chat_log(engine, key_prefix, room_id)] == ["spoilers are fine", "badword"]


def test_links_are_refused_unless_the_creator_allows_them(api: Api, room: tuple[str, str]) -> None:
    creator, room_id = room
    viewer = unique("v")
    links = ["see https://evil.test/x", "go to www.example", "visit example.com now", "bit.ly/abc"]
    links.append("at a.example.com.")
    for text in links:
        refused = chat(api, viewer, room_id, text)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "links_not_allowed", text
    posted(api, viewer, room_id, "e.g. 3.14 is pi...ok")
    assert creator_settings(api, creator, allow_links=True).status_code == 200
    posted(api, viewer, room_id, "visit example.com now")


def test_chat_settings_are_validated_and_read_back(api: Api) -> None:
    creator = unique("c")
    headers = api.auth(creator, "creator")
    defaults = api.http.get("/v1/creator/chat-settings", headers=headers)
    assert defaults.json() == {"slow_mode_s": 0, "blocked_words": [], "allow_links": False}
    for body in (
        {"slow_mode_s": 301},
        {"slow_mode_s": -1},
        {"blocked_words": ["w"] * 201},
        {"blocked_words": ["x" * 41]},
        {"blocked_words": ["  "]},
        {"blocked_words": ["a\x00b"]},
        {"allow_links": "yes"},
        {"unknown": 1},
    ):
        reply = api.http.put("/v1/creator/chat-settings", json=body, headers=headers)
        assert reply.status_code == 422 and reply.json()["error"]["code"] == "invalid_request", body
    kept = {"slow_mode_s": 300, "blocked_words": ["w"] * 200, "allow_links": True}
    assert api.http.put("/v1/creator/chat-settings", json=kept, headers=headers).status_code == 200
    assert api.http.get("/v1/creator/chat-settings", headers=headers).json() == {
        **kept,
        "blocked_words": ["w"],
    }
    viewer = api.http.get("/v1/creator/chat-settings", headers=api.auth(unique("v")))
    assert viewer.status_code == 403


def test_moderators_are_appointed_listed_and_removed_by_the_creator_only(api: Api) -> None:
    creator, mod = unique("c"), unique("v")
    name = api.me(mod)["name"]
    assert moderator(api, creator, mod).status_code == 204
    assert moderator(api, creator, mod).status_code == 204  # already one: the same
    listed = api.http.get("/v1/creator/moderators", headers=api.auth(creator, "creator")).json()
    assert listed == {"moderators": [{"id": mod, "name": name}]}
    assert moderator(api, creator, mod, "DELETE").status_code == 204
    missing = moderator(api, creator, mod, "DELETE")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "moderator_not_found"
    assert moderator(api, creator, creator).status_code == 422
    assert moderator(api, creator, "bad id!").status_code == 422
    by_viewer = api.http.put(f"/v1/creator/moderators/{mod}", headers=api.auth(unique("v")))
    assert by_viewer.status_code == 403


def test_badges_mark_the_creator_moderators_at_once_and_the_top_gifters(
    api: Api, engine: Engine, key_prefix: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    mod, gifter, plain = unique("v"), unique("v"), unique("v")
    posted(api, creator, room_id, "I am live", role="creator")
    assert moderator(api, creator, mod).status_code == 204
    posted(api, mod, room_id, "as a moderator")
    assert moderator(api, creator, mod, "DELETE").status_code == 204
    posted(api, mod, room_id, "removed")
    api.buy(gifter)
    assert api.gift(gifter, room_id, "rose").status_code == 200
    posted(api, gifter, room_id, "I gifted")
    posted(api, plain, room_id, "just watching")
    badges = [(e["s"], e["bd"]) for e in chat_log(engine, key_prefix, room_id)]
    assert badges == [
        (creator, "creator"),
        (mod, "moderator"),
        (mod, ""),
        (gifter, "top_gifter"),
        (plain, ""),
    ]


# -- the welcome and resume ---------------------------------------------------------------


@pytest.mark.anyio
async def test_the_welcome_carries_the_last_50_messages_of_the_live(
    api: Api, server: ServerProcess, room: tuple[str, str]
) -> None:
    _, room_id = room
    users = [unique("v") for _ in range(11)]
    sent = [posted(api, users[i // 5], room_id, f"message {i}")["event_id"] for i in range(53)]
    # The room is loaded by this first socket: its recent chat comes from the engine.
    first = await RoomSocket.open(server.base_url, room_id, api.token(unique("v")))
    welcome = await first.welcome()
    assert [m["event_id"] for m in welcome["recent_chat"]] == sent[-50:]
    assert welcome["recent_chat"][-1]["text"] == "message 52"
    # Then from the room this process keeps, as batches move it on.
    more = [posted(api, users[-1], room_id, f"later {i}")["event_id"] for i in range(2)]
    await first.wait_for(lambda f: any(e.get("event_id") == more[-1] for e in f.get("events", ())))
    second = await RoomSocket.open(server.base_url, room_id, api.token(unique("v")))
    assert [m["event_id"] for m in (await second.welcome())["recent_chat"]] == (sent + more)[-50:]
    await first.close()
    await second.close()


@pytest.mark.anyio
async def test_a_resume_replays_the_missed_chat_exactly_once(
    api: Api, server: ServerProcess, room: tuple[str, str]
) -> None:
    _, room_id = room
    watcher = unique("v")
    seen = posted(api, unique("v"), room_id, "seen live")["event_id"]
    ws = await socket(server, api, room_id, watcher)
    welcome = ws.frames[0]
    assert [m["event_id"] for m in welcome["recent_chat"]] == [seen]
    also = posted(api, unique("v"), room_id, "seen too")["event_id"]
    batch = await ws.wait_for(lambda f: any(e.get("event_id") == also for e in f.get("events", ())))
    await ws.close()
    missed = [posted(api, unique("v"), room_id, f"missed {i}")["event_id"] for i in range(3)]
    back = await socket(server, api, room_id, watcher, since=batch["offset"], epoch=welcome["epoch"])
    resumed = back.frames[0]
    assert resumed["resumed"] is True
    assert [m["event_id"] for m in resumed["recent_chat"]] == [seen, also]
    await back.wait_for(lambda f: any(e.get("event_id") == missed[-1] for e in f.get("events", ())))
    posted(api, unique("v"), room_id, "after")
    await back.wait_for(lambda f: any(e.get("text") == "after" for e in f.get("events", ())))
    replayed = [e["event_id"] for e in back.events("chat")]
    assert replayed[:3] == missed and len(replayed) == 4
    await back.close()


# -- hostile input --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT | st.sampled_from(XSS) | st.text(alphabet=string.printable, max_size=200))
def test_any_text_over_http_is_posted_clean_or_refused_never_a_500(
    api: Api, engine: Engine, key_prefix: str, room: tuple[str, str], text: str
) -> None:
    _, room_id = room
    reply = chat(api, unique("v"), room_id, text)
    assert reply.status_code in (201, 403, 422), reply.text
    if reply.status_code != 201:
        assert reply.json()["error"]["code"] in ("invalid_request", "links_not_allowed", "message_blocked")
    for entry in chat_log(engine, key_prefix, room_id):
        assert_clean(entry["x"])


def chat_frames() -> st.SearchStrategy[dict[str, Any]]:
    """Chat frames near the valid ones, each well within the socket's frame size limit."""
    text = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)
    values = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=10)
        | st.lists(st.integers(0, 9), max_size=3)
    )
    return st.fixed_dictionaries(
        {"type": st.just("chat")},
        optional={
            "text": text | st.sampled_from(XSS) | values,
            "client_id": st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True) | values,
            "extra": values,
        },
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(chat_frames(), min_size=1, max_size=5))
def test_hostile_chat_frames_get_one_answer_each_and_only_clean_text_is_broadcast(
    api: Api,
    server: ServerProcess,
    engine: Engine,
    key_prefix: str,
    room: tuple[str, str],
    frames: list[dict[str, Any]],
) -> None:
    _, room_id = room
    url = (
        f"{server.base_url.replace('http://', 'ws://')}/v1/rooms/{room_id}/ws?token={api.token(unique('v'))}"
    )
    with connect(url, max_size=None) as ws:
        ws.recv(timeout=10)  # welcome
        for frame in frames:  # at most 5: within the burst, and below the invalid frames that close
            ws.send(orjson.dumps(frame).decode())
            while (answer := orjson.loads(ws.recv(timeout=10)))["type"] not in ("chat_ack", "error"):
                pass
            if answer["type"] == "error":
                assert answer["code"] in ("invalid_request", "links_not_allowed", "message_blocked"), answer
    for entry in chat_log(engine, key_prefix, room_id):
        assert_clean(entry["x"])
