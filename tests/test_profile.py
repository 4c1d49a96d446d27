"""The caller's own record: ``GET /v1/me``, and the region it remembers per user."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import Api, unique


def put_region(api: Api, user_id: str, body: Any) -> httpx.Response:
    return api.http.put("/v1/me/region", json=body, headers=api.auth(user_id))


def test_a_saved_region_is_read_back_and_no_other_user_has_it(api: Api) -> None:
    alice, bob = unique("v"), unique("v")
    name = api.me(alice)["name"]
    assert api.me(alice) == {"user_id": alice, "role": "viewer", "name": name, "region": None}
    saved = put_region(api, alice, {"region": "GB"})
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"user_id": alice, "role": "viewer", "name": name, "region": "GB"}
    assert api.me(alice)["region"] == "GB"
    assert api.me(bob)["region"] is None
    assert put_region(api, alice, {"region": "JP"}).json()["region"] == "JP"
    assert api.me(alice)["region"] == "JP"
    # null forgets the choice.
    assert put_region(api, alice, {"region": None}).json()["region"] is None
    assert api.me(alice)["region"] is None


def test_the_region_is_kept_with_the_name_a_token_gave(api: Api) -> None:
    user = unique("v")
    minted = api.http.post("/v1/dev/token", json={"user_id": user, "role": "creator", "name": "Zoë"})
    token = minted.json()["token"]
    headers = {"authorization": f"Bearer {token}"}
    reply = api.http.put("/v1/me/region", json={"region": "DE"}, headers=headers)
    assert reply.json() == {"user_id": user, "role": "creator", "name": "Zoë", "region": "DE"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"region": "FR"}, "unknown_region"),
        ({"region": "XX"}, "unknown_region"),
        ({"region": "gb"}, "invalid_request"),
        ({"region": 44}, "invalid_request"),
        ({}, "invalid_request"),
        ({"region": "GB", "extra": 1}, "invalid_request"),
    ],
)
def test_a_bad_region_is_refused_and_changes_nothing(api: Api, body: Any, code: str) -> None:
    user = unique("v")
    assert put_region(api, user, {"region": "US"}).status_code == 200
    refused = put_region(api, user, body)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == code
    assert api.me(user)["region"] == "US"


def test_an_unknown_region_names_the_known_ones(api: Api) -> None:
    refused = put_region(api, unique("v"), {"region": "FR"})
    assert refused.json() == {
        "error": {"code": "unknown_region", "message": "unknown region 'FR'; known regions: DE, GB, JP, US"}
    }


def test_saving_a_region_needs_a_token(api: Api) -> None:
    reply = api.http.put("/v1/me/region", json={"region": "GB"})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "unauthorized"
