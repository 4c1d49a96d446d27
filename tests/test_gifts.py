"""The gift path: debit, creator credit, idempotency, budgets, rooms and the race."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support import Api, ServerProcess, unique
from tests.wsclient import RoomSocket


def test_a_gift_debits_the_sender_and_credits_the_creator(
    api: Api, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    reply = api.gift(viewer, room_id, "hand_hearts", 3)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["coins"], body["cost"]) == (250, 300)
    assert api.coins(viewer) == 250
    gift_entry = api.ledger(viewer)[0]
    assert (gift_entry["kind"], gift_entry["delta"], gift_entry["balance"]) == ("gift", -300, 250)
    assert (gift_entry["ref"], gift_entry["room_id"], gift_entry["gift_id"], gift_entry["count"]) == (
        body["gift_event_id"],
        room_id,
        "hand_hearts",
        3,
    )
    earnings = api.earnings(creator)
    buckets = {name: earnings[name] for name in ("pending", "available", "reserved", "withdrawn", "lifetime")}
    assert buckets == {"pending": 150, "available": 0, "reserved": 0, "withdrawn": 0, "lifetime": 150}
    assert earnings["lives"] == [{"room_id": room_id, "diamonds": 150}]
    [credit] = api.earnings_ledger(creator)
    assert (credit["pending"], credit["ref"], credit["sender"]) == (150, body["gift_event_id"], viewer)
    row = {name: credit[name] for name in ("diamonds", "gift_id", "gift_name", "count", "room_id", "state")}
    assert row == {
        "diamonds": 150,
        "gift_id": "hand_hearts",
        "gift_name": "Hand Hearts",
        "count": 3,
        "room_id": room_id,
        "state": "pending",
    }


def test_an_odd_gift_rounds_the_creator_share_down(api: Api, viewer: str, room: tuple[str, str]) -> None:
    creator, room_id = room
    api.buy(viewer)
    assert api.gift(viewer, room_id, "rose", 3).status_code == 200
    assert api.gift(viewer, room_id, "corgi", 1).status_code == 200
    assert api.earnings(creator)["pending"] == 1 + 149
    assert api.coins(viewer) == 550 - 3 - 299


def test_a_retried_gift_with_the_same_key_charges_once(api: Api, viewer: str, room: tuple[str, str]) -> None:
    creator, room_id = room
    api.buy(viewer)
    first = api.gift(viewer, room_id, "doughnut", 2, key="tap-1")
    retries = [api.gift(viewer, room_id, "doughnut", 2, key="tap-1") for _ in range(3)]
    assert all(r.json() == first.json() for r in retries)
    assert all(r.headers.get("idempotent-replayed") == "true" for r in retries)
    assert api.coins(viewer) == 490
    assert api.earnings(creator)["pending"] == 30
    assert len(api.ledger(viewer)) == 2


def test_a_key_reused_for_another_gift_is_refused(api: Api, viewer: str, room: tuple[str, str]) -> None:
    _, room_id = room
    api.buy(viewer)
    assert api.gift(viewer, room_id, "rose", 1, key="tap-2").status_code == 200
    for gift, count in (("rose", 2), ("perfume", 1)):
        reply = api.gift(viewer, room_id, gift, count, key="tap-2")
        assert reply.status_code == 409 and reply.json()["error"]["code"] == "idempotency_mismatch"
    assert api.coins(viewer) == 549


def test_keys_belong_to_their_user(api: Api, room: tuple[str, str]) -> None:
    _, room_id = room
    alice, bob = unique("v"), unique("v")
    api.buy(alice)
    api.buy(bob)
    assert api.gift(alice, room_id, "rose", 1, key="same").status_code == 200
    assert api.gift(bob, room_id, "rose", 2, key="same").status_code == 200
    assert (api.coins(alice), api.coins(bob)) == (549, 548)


def test_a_gift_beyond_the_balance_is_402_and_changes_nothing(
    api: Api, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    reply = api.gift(viewer, room_id, "money_gun", 2, key="big")
    assert reply.status_code == 402
    assert reply.json() == {
        "error": {
            "code": "insufficient_coins",
            "message": "this gift costs 1000 coins; the balance is 550",
            "cost": 1000,
            "balance": 550,
        }
    }
    assert api.coins(viewer) == 550 and len(api.ledger(viewer)) == 1
    assert api.earnings(creator)["pending"] == 0
    # A failed attempt does not burn its key: after a top-up the same key goes through.
    api.buy(viewer)
    assert api.gift(viewer, room_id, "money_gun", 2, key="big").status_code == 200
    assert api.coins(viewer) == 100


def test_the_daily_budget_is_enforced_in_the_debit(api: Api, viewer: str, room: tuple[str, str]) -> None:
    _, room_id = room
    api.buy(viewer)
    reply = api.http.put("/v1/wallet/limits", json={"daily_limit": 250}, headers=api.auth(viewer))
    assert reply.json() == {"coins": 550, "daily_limit": 250, "spent_today": 0}
    assert api.gift(viewer, room_id, "hand_hearts", 2).status_code == 200
    over = api.gift(viewer, room_id, "hand_hearts", 1)
    assert over.status_code == 403
    assert over.json() == {
        "error": {
            "code": "daily_limit_exceeded",
            "message": "this gift costs 100 coins; 200 of the daily limit of 250 are already spent "
            "today, 50 left",
            "cost": 100,
            "daily_limit": 250,
            "spent_today": 200,
            "budget_left": 50,
        }
    }
    assert api.gift(viewer, room_id, "doughnut", 1).status_code == 200
    assert api.wallet(viewer) == {"coins": 320, "daily_limit": 250, "spent_today": 230}
    api.http.put("/v1/wallet/limits", json={"daily_limit": None}, headers=api.auth(viewer))
    assert api.gift(viewer, room_id, "hand_hearts", 1).status_code == 200
    assert api.wallet(viewer) == {"coins": 220, "daily_limit": None, "spent_today": 330}


@pytest.mark.anyio
async def test_a_gift_refused_on_the_socket_names_the_cost_and_what_the_sender_has(
    server: ServerProcess, api: Api, viewer: str, room: tuple[str, str]
) -> None:
    _, room_id = room
    api.buy(viewer)
    sock = await RoomSocket.open(server.base_url, room_id, api.token(viewer))
    await sock.welcome()
    broke = await sock.gift("money_gun", 2, key="too-big")
    assert broke == {
        "type": "error",
        "code": "insufficient_coins",
        "message": "this gift costs 1000 coins; the balance is 550",
        "cost": 1000,
        "balance": 550,
        "idempotency_key": "too-big",
    }
    reply = api.http.put("/v1/wallet/limits", json={"daily_limit": 120}, headers=api.auth(viewer))
    assert reply.status_code == 200
    assert (await sock.gift("hand_hearts", 1))["type"] == "gift_ack"
    over = await sock.gift("doughnut", 1, key="over")
    assert over == {
        "type": "error",
        "code": "daily_limit_exceeded",
        "message": "this gift costs 30 coins; 100 of the daily limit of 120 are already spent today, 20 left",
        "cost": 30,
        "daily_limit": 120,
        "spent_today": 100,
        "budget_left": 20,
        "idempotency_key": "over",
    }
    await sock.close()
    assert api.wallet(viewer) == {"coins": 450, "daily_limit": 120, "spent_today": 100}


@pytest.mark.parametrize("limit", [-1, 1.5, "100", True, 10**12])
def test_a_bad_budget_is_refused(api: Api, viewer: str, limit: object) -> None:
    reply = api.http.put("/v1/wallet/limits", json={"daily_limit": limit}, headers=api.auth(viewer))
    assert reply.status_code == 422
    assert api.wallet(viewer)["daily_limit"] is None


def test_gifts_to_unknown_or_ended_rooms_are_refused(api: Api, viewer: str, room: tuple[str, str]) -> None:
    creator, room_id = room
    api.buy(viewer)
    missing = api.gift(viewer, unique("r"), "rose")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "room_not_found"
    ended = api.end_room(creator, room_id)
    assert ended.status_code == 200 and ended.json()["state"] == "ended"
    reply = api.gift(viewer, room_id, "rose")
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "room_ended"
    assert api.coins(viewer) == 550
    assert room_id not in [r["room_id"] for r in api.http.get("/v1/rooms").json()["rooms"]]


def test_a_retry_after_the_room_ended_gets_the_first_answer(
    api: Api, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    first = api.gift(viewer, room_id, "perfume", 2, key="before-end")
    assert first.status_code == 200
    api.end_room(creator, room_id)
    retry = api.gift(viewer, room_id, "perfume", 2, key="before-end")
    assert retry.status_code == 200 and retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    other = api.gift(viewer, room_id, "perfume", 3, key="before-end")
    assert other.status_code == 409 and other.json()["error"]["code"] == "room_ended"
    assert api.coins(viewer) == 510 and api.earnings(creator)["pending"] == 20


def test_a_creator_is_live_in_one_room_at_a_time(api: Api) -> None:
    creator = unique("c")
    room_id = api.open_room(creator)
    assert room_id in [r["room_id"] for r in api.http.get("/v1/rooms").json()["rooms"]]
    again = api.http.post("/v1/rooms", json={}, headers=api.auth(creator, "creator"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_live"
    api.end_room(creator, room_id)
    assert api.open_room(creator) != room_id


def test_a_room_opened_with_no_body_takes_every_default(api: Api) -> None:
    creator = unique("c")
    opened = api.http.post("/v1/rooms", headers=api.auth(creator, "creator"))
    assert opened.status_code == 201, opened.text
    assert (opened.json()["creator_id"], opened.json()["title"]) == (creator, f"{creator}'s live")
    assert api.http.get(f"/v1/rooms/{opened.json()['room_id']}").json()["state"] == "live"
    # An empty body is no JSON anywhere else: a gift with none is still refused.
    viewer = unique("v")
    refused = api.http.post(f"/v1/rooms/{opened.json()['room_id']}/gifts", headers=api.auth(viewer))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"


def test_only_creators_open_rooms_and_only_their_owner_ends_them(api: Api, room: tuple[str, str]) -> None:
    _, room_id = room
    viewer = unique("v")
    assert api.http.post("/v1/rooms", json={}, headers=api.auth(viewer)).status_code == 403
    other = api.end_room(unique("c"), room_id)
    assert other.status_code == 403
    assert api.http.get(f"/v1/rooms/{room_id}").json()["state"] == "live"


def test_a_creator_cannot_gift_their_own_room_nor_an_admin_gift(api: Api, room: tuple[str, str]) -> None:
    creator, room_id = room
    reply = api.http.post(
        f"/v1/rooms/{room_id}/gifts",
        json={"gift_id": "rose", "count": 1, "idempotency_key": "k"},
        headers=api.auth(creator, "creator"),
    )
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "self_gift"
    admin = api.http.post(
        f"/v1/rooms/{room_id}/gifts",
        json={"gift_id": "rose", "count": 1, "idempotency_key": "k"},
        headers=api.auth(unique("a"), "admin"),
    )
    assert admin.status_code == 403 and admin.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "body",
    [
        {"gift_id": "rose", "count": 0, "idempotency_key": "k"},
        {"gift_id": "rose", "count": 1000, "idempotency_key": "k"},
        {"gift_id": "rose", "count": -5, "idempotency_key": "k"},
        {"gift_id": "rose", "count": 1.0, "idempotency_key": "k"},
        {"gift_id": "rose", "count": 2.5, "idempotency_key": "k"},
        {"gift_id": "rose", "count": "3", "idempotency_key": "k"},
        {"gift_id": "rose", "count": True, "idempotency_key": "k"},
        {"gift_id": "rose", "count": 10**30, "idempotency_key": "k"},
        {"gift_id": "rose", "count": 1},
        {"gift_id": "rose", "count": 1, "idempotency_key": ""},
        {"gift_id": "rose", "count": 1, "idempotency_key": "k" * 129},
        {"gift_id": "rose", "count": 1, "idempotency_key": "has space"},
        {"gift_id": "{u:x}", "count": 1, "idempotency_key": "k"},
        {"gift_id": "rose", "count": 1, "idempotency_key": "k", "coins": -100},
        ["rose", 1, "k"],
        "rose",
        None,
    ],
)
def test_malformed_gifts_are_422_and_change_nothing(
    api: Api, viewer: str, room: tuple[str, str], body: object
) -> None:
    _, room_id = room
    api.buy(viewer)
    reply = api.http.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=api.auth(viewer))
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"]["code"] == "invalid_request"
    assert api.coins(viewer) == 550 and len(api.ledger(viewer)) == 1


def test_an_unknown_gift_is_404(api: Api, viewer: str, room: tuple[str, str]) -> None:
    _, room_id = room
    reply = api.gift(viewer, room_id, "tiara")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "unknown_gift"


def test_30_concurrent_gifts_of_100_on_545_coins_exactly_5_succeed(
    api: Api, server: ServerProcess, viewer: str, room: tuple[str, str]
) -> None:
    creator, room_id = room
    api.buy(viewer)
    assert api.gift(viewer, room_id, "finger_heart", 1).status_code == 200
    assert api.coins(viewer) == 545
    headers = api.auth(viewer)

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            start = asyncio.Event()

            async def one(i: int) -> httpx.Response:
                await start.wait()
                body = {"gift_id": "hand_hearts", "count": 1, "idempotency_key": f"race-{i}"}
                return await client.post(f"/v1/rooms/{room_id}/gifts", json=body, headers=headers)

            tasks = [asyncio.create_task(one(i)) for i in range(30)]
            await asyncio.sleep(0)
            start.set()
            return await asyncio.gather(*tasks)

    replies = asyncio.run(race())
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] * 5 + [402] * 25
    assert api.coins(viewer) == 45
    ledger = api.ledger(viewer)
    assert sum(e["delta"] for e in ledger) == 45
    assert [e["delta"] for e in ledger].count(-100) == 5
    assert api.earnings(creator)["pending"] == 2 + 5 * 50
