"""A live's summary: exact figures from what the server keeps, while live, at the end, and
after the live's sets have expired."""

from __future__ import annotations

import time
from typing import Any

from server.keys import KeySchema
from tests.conftest import Engine
from tests.support import Api, engine_client, unique


def summary(api: Api, user_id: str, room_id: str, role: str = "creator") -> Any:
    return api.http.get(f"/v1/rooms/{room_id}/summary", headers=api.auth(user_id, role))


def wait_for_summary(api: Api, creator: str, room_id: str, check: Any, limit_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while True:
        body: dict[str, Any] = summary(api, creator, room_id).json()
        if check(body):
            return body
        assert time.monotonic() < deadline, f"the summary never got there: {body}"
        time.sleep(0.05)


def test_the_summary_counts_exactly_what_two_gifters_sent_live_and_ended(
    api: Api, engine: Engine, key_prefix: str
) -> None:
    creator, alice, bob = unique("c"), unique("v"), unique("v")
    reply = api.http.post("/v1/rooms", json={"title": "Friday live"}, headers=api.auth(creator, "creator"))
    room = reply.json()
    room_id = room["room_id"]
    api.buy(alice)
    api.buy(bob)
    for sender, gift_id, count in ((alice, "hand_hearts", 3), (bob, "doughnut", 1), (alice, "rose", 2)):
        assert api.gift(sender, room_id, gift_id, count).status_code == 200
    likes = api.http.post(f"/v1/rooms/{room_id}/likes", json={"count": 5}, headers=api.auth(bob))
    assert likes.json()["accepted"] == 5
    follow = api.http.put(f"/v1/creators/{creator}/follow", headers=api.auth(alice))
    assert follow.status_code == 200, follow.text

    live = wait_for_summary(api, creator, room_id, lambda body: body["likes"] == 5)
    assert live["ended_ms"] is None
    assert 0 <= live["duration_ms"] <= int(time.time() * 1000) - room["created_ms"] + 1000
    figures = {
        "room_id": room_id,
        "title": "Friday live",
        "started_ms": room["created_ms"],
        "coins": 332,  # 300 + 30 + 2
        "diamonds": 166,  # 150 + 15 + 1, half of each gift rounded down
        "gifts": 3,
        "gifters": 2,
        "top_gifters": [
            {"user_id": alice, "name": api.me(alice)["name"], "coins": 302},
            {"user_id": bob, "name": api.me(bob)["name"], "coins": 30},
        ],
        "likes": 5,
        "new_followers": 1,
    }
    assert {k: v for k, v in live.items() if k not in ("ended_ms", "duration_ms")} == figures

    ended = api.end_room(creator, room_id)
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["state"] == "ended" and body["room_id"] == room_id
    final = body["summary"]
    assert final == {
        **figures,
        "ended_ms": body["ended_ms"],
        "duration_ms": body["ended_ms"] - room["created_ms"],
    }
    assert summary(api, creator, room_id).json() == final
    assert summary(api, "boss", room_id, "admin").json() == final

    # The live's sets expire a day after its end; the summary was kept as it ended.
    keys = KeySchema(key_prefix).room(room_id)
    client = engine_client(engine.url)
    try:
        assert client.delete(keys.top, keys.names, keys.published, keys.followed) == 4
    finally:
        client.close()
    assert summary(api, creator, room_id).json() == final


def test_a_live_without_gifts_sums_to_zeros(api: Api) -> None:
    creator = unique("c")
    room_id = api.open_room(creator)
    body = summary(api, creator, room_id).json()
    assert {k: body[k] for k in ("coins", "diamonds", "gifts", "gifters", "top_gifters", "likes")} == {
        "coins": 0,
        "diamonds": 0,
        "gifts": 0,
        "gifters": 0,
        "top_gifters": [],
        "likes": 0,
    }
    assert body["new_followers"] == 0
    final = api.end_room(creator, room_id).json()["summary"]
    assert (final["gifts"], final["top_gifters"], final["ended_ms"] is not None) == (0, [], True)


def test_only_the_creator_or_an_admin_reads_a_summary(api: Api) -> None:
    creator, other, fan = unique("c"), unique("c"), unique("v")
    room_id = api.open_room(creator)
    refused = summary(api, other, room_id)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {"code": "forbidden", "message": "only the room's creator can read its summary"}
    }
    assert summary(api, fan, room_id, "viewer").status_code == 403
    assert api.http.get(f"/v1/rooms/{room_id}/summary").status_code == 401
    missing = summary(api, creator, "r_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "room_not_found"
    assert summary(api, creator, "bad id!").status_code == 422
    # Another creator cannot end it either, and nothing changed.
    assert api.end_room(other, room_id).status_code == 403
    assert summary(api, creator, room_id).json()["ended_ms"] is None
