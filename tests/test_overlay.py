"""The streamer overlay's token and socket, and the creator's test alert, on a real server."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from tests.conftest import Engine
from tests.support import Api, ServerProcess, running_server, server_env, unique
from tests.wsclient import RoomSocket

pytestmark = pytest.mark.anyio


def overlay_token(api: Api, creator: str) -> str:
    reply = api.http.get("/v1/creator/overlay", headers=api.auth(creator, "creator"))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["url"] == f"/overlay/{body['token']}"
    token: str = body["token"]
    return token


async def open_overlay(server: ServerProcess, token: str) -> RoomSocket:
    return await RoomSocket.open(server.base_url, "", None, path=f"/v1/overlay/{token}/ws")


async def test_the_overlay_watches_the_live_room_read_only_and_uncounted(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    token = overlay_token(api, creator)
    assert overlay_token(api, creator) == token  # stable until regenerated
    info = api.http.get(f"/v1/overlay/{token}").json()
    name = api.http.get("/v1/me", headers=api.auth(creator, "creator")).json()["name"]
    assert info == {"creator": {"id": creator, "name": name}, "room_id": room_id}
    overlay = await open_overlay(server, token)
    welcome = await overlay.welcome()
    assert welcome["overlay"] is True and welcome["room_id"] == room_id
    fan = unique("v")
    api.buy(fan)
    viewer = await RoomSocket.open(server.base_url, room_id, api.token(fan))
    await viewer.welcome()
    await viewer.wait_event({"type": "viewers", "viewers": 1})  # the overlay is not a viewer
    assert api.gift(fan, room_id, "finger_heart", 3).status_code == 200
    [event] = await overlay.wait_gift_count(3)
    assert event["sender"]["id"] == fan
    refused = await overlay.gift("rose")
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    assert api.coins(fan) == 550 - 15
    assert not [f for f in overlay.frames if f["type"] == "balance"]
    await overlay.close()
    await viewer.close()


async def test_a_test_alert_reaches_overlays_and_no_viewer(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    overlay = await open_overlay(server, overlay_token(api, creator))
    await overlay.welcome()
    fan = unique("v")
    api.buy(fan)
    viewer = await RoomSocket.open(server.base_url, room_id, api.token(fan))
    await viewer.welcome()
    sent = api.http.post("/v1/creator/test-alert", headers=api.auth(creator, "creator"))
    assert sent.status_code == 202 and sent.json()["room_id"] == room_id
    alert = await overlay.wait_for(lambda f: any(e["type"] == "test_alert" for e in f.get("events", ())))
    [event] = [e for e in alert["events"] if e["type"] == "test_alert"]
    assert (event["sender"]["name"], event["combo"]) == ("Test Viewer", 5)
    # A gift after the alert reaches the viewer; the alert before it never did.
    assert api.gift(fan, room_id, "rose").status_code == 200
    await viewer.wait_gift_count(1)
    assert not viewer.events("test_alert")
    await overlay.close()
    await viewer.close()


async def test_an_overlay_token_is_regenerable_and_grants_nothing_else(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, _ = room
    old = overlay_token(api, creator)
    reply = api.http.post("/v1/creator/overlay/regenerate", headers=api.auth(creator, "creator"))
    new = reply.json()["token"]
    assert new != old and overlay_token(api, creator) == new
    assert api.http.get(f"/v1/overlay/{old}").json()["error"]["code"] == "overlay_not_found"
    stale = await open_overlay(server, old)
    assert (await stale.recv())["code"] == "unauthorized"
    assert (await stale.closed())[0] == 4401
    # The token is no bearer token: it opens nothing but the overlay.
    for path in ("/v1/wallet", "/v1/creator/earnings"):
        assert api.http.get(path, headers={"authorization": f"Bearer {new}"}).status_code == 401
    assert api.http.get("/v1/creator/overlay", headers=api.auth(unique("v"))).status_code == 403


async def test_regenerating_closes_the_old_tokens_overlays_at_once_on_every_process(
    server: ServerProcess, api: Api, room: tuple[str, str], engine: Engine, key_prefix: str, logs: Path
) -> None:
    creator, room_id = room
    old = overlay_token(api, creator)
    with running_server(server_env(engine.url, key_prefix), logs) as other:
        here = await open_overlay(server, old)
        there = await open_overlay(other, old)
        for overlay in (here, there):
            assert (await overlay.welcome())["room_id"] == room_id
        reply = api.http.post("/v1/creator/overlay/regenerate", headers=api.auth(creator, "creator"))
        assert reply.status_code == 200, reply.text
        new = reply.json()["token"]
        fresh = await open_overlay(other, new)
        assert (await fresh.welcome())["room_id"] == room_id
        for overlay in (here, there):
            revoked = await overlay.wait_for(lambda f: f["type"] == "error")
            assert revoked == {
                "type": "error",
                "code": "overlay_revoked",
                "message": "this overlay's token was regenerated: open the overlay's new URL",
            }
            assert await overlay.closed() == (4401, "overlay_revoked")
        sent = api.http.post("/v1/creator/test-alert", headers=api.auth(creator, "creator"))
        assert sent.status_code == 202
        await fresh.wait_for(lambda f: any(e["type"] == "test_alert" for e in f.get("events", ())))
        assert not [f for f in fresh.frames if f["type"] == "error"]
        for overlay in (here, there):
            assert not [e for f in overlay.frames for e in f.get("events", ()) if e["type"] == "test_alert"]
        # Regenerating again closes the overlay of the second token, and the old one stays shut.
        again = api.http.post("/v1/creator/overlay/regenerate", headers=api.auth(creator, "creator"))
        assert again.status_code == 200
        assert (await fresh.wait_for(lambda f: f["type"] == "error"))["code"] == "overlay_revoked"
        assert await fresh.closed() == (4401, "overlay_revoked")
        stale = await open_overlay(server, old)
        assert (await stale.recv())["code"] == "unauthorized"
        assert (await stale.closed())[0] == 4401


async def test_a_viewer_stays_when_the_creator_regenerates_the_overlay(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    creator, room_id = room
    overlay = await open_overlay(server, overlay_token(api, creator))
    await overlay.welcome()
    fan = unique("v")
    api.buy(fan)
    viewer = await RoomSocket.open(server.base_url, room_id, api.token(fan))
    await viewer.welcome()
    assert (
        api.http.post("/v1/creator/overlay/regenerate", headers=api.auth(creator, "creator")).status_code
        == 200
    )
    assert await overlay.closed() == (4401, "overlay_revoked")
    assert api.gift(fan, room_id, "rose").status_code == 200
    await viewer.wait_gift_count(1)
    assert not [f for f in viewer.frames if f["type"] == "error"]
    await viewer.close()


async def test_an_overlay_of_a_creator_who_is_not_live_is_told_so(server: ServerProcess, api: Api) -> None:
    creator = unique("c")
    token = overlay_token(api, creator)
    assert api.http.get(f"/v1/overlay/{token}").json()["room_id"] is None
    sock = await open_overlay(server, token)
    assert (await sock.recv())["code"] == "not_live"
    assert (await sock.closed())[0] == 4404
    reply = api.http.post("/v1/creator/test-alert", headers=api.auth(creator, "creator"))
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "not_live"


async def test_overlay_tokens_never_reach_the_server_log(
    server: ServerProcess, api: Api, room: tuple[str, str]
) -> None:
    """The overlay token is the credential in the overlay's URL: the page, its lookup and its
    socket are logged with the token redacted, as bearer tokens are."""
    creator, _ = room
    token = overlay_token(api, creator)
    assert api.http.get(f"/overlay/{token}").status_code == 200
    assert api.http.get(f"/v1/overlay/{token}").status_code == 200
    overlay = await open_overlay(server, token)
    await overlay.welcome()
    await overlay.close()
    regenerated = api.http.post("/v1/creator/overlay/regenerate", headers=api.auth(creator, "creator"))
    new = regenerated.json()["token"]
    assert api.http.get(f"/v1/overlay/{new}?x=1").status_code == 200
    expected = (
        '"GET /overlay/<redacted> HTTP/1.1" 200',
        '"GET /v1/overlay/<redacted> HTTP/1.1" 200',
        '"WebSocket /v1/overlay/<redacted>/ws" [accepted]',
        '"POST /v1/creator/overlay/regenerate HTTP/1.1" 200',
        '"GET /v1/overlay/<redacted>?x=1 HTTP/1.1" 200',
    )
    deadline = time.monotonic() + 5
    log = server.log_path.read_text()
    while not all(line in log for line in expected) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
        log = server.log_path.read_text()
    assert [line for line in expected if line not in log] == []
    assert token not in log and new not in log
