"""The catalog's stored gifts: admins' edits kept in the engine are read back at start-up by
servers of other versions, so a gift written with fewer or more fields than this version has,
or one that cannot be read at all, never stops a server from starting. And each gift's tier,
with the thresholds the settings give."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from server.keys import KeySchema
from server.settings import Settings, SettingsError
from tests.conftest import Engine
from tests.support import Api, delete_prefix, engine_client, running_server, server_env, unique

SHIPPED_COINS = {
    "rose": 1,
    "finger_heart": 5,
    "perfume": 20,
    "doughnut": 30,
    "hand_hearts": 100,
    "corgi": 299,
    "money_gun": 500,
    "galaxy": 1000,
    "whale_diving": 2150,
    "lion": 29999,
    "universe": 34999,
}


def test_each_gift_has_its_tier_by_the_default_thresholds(api: Api) -> None:
    body = api.http.get("/v1/catalog/gifts").json()
    assert (body["tiers"], body["confirm_coins"]) == ({"moment_coins": 1000, "grand_coins": 10000}, 1000)
    tiers = {g["id"]: (g["coins"], g["tier"]) for g in body["gifts"] if g["id"] in SHIPPED_COINS}
    assert tiers == {
        "rose": (1, 1),
        "finger_heart": (5, 1),
        "perfume": (20, 1),
        "doughnut": (30, 1),
        "hand_hearts": (100, 1),
        "corgi": (299, 1),
        "money_gun": (500, 1),
        "galaxy": (1000, 2),
        "whale_diving": (2150, 2),
        "lion": (29999, 3),
        "universe": (34999, 3),
    }


def test_the_tier_thresholds_and_the_confirm_price_are_settings(engine: Engine, logs: Path) -> None:
    prefix = f"{unique('t')}:"
    env = server_env(
        engine.url,
        prefix,
        GIFTING_MOMENT_COINS="100",
        GIFTING_GRAND_MOMENT_COINS="500",
        GIFTING_CONFIRM_COINS="250",
    )
    try:
        with running_server(env, logs) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
            body = http.get("/v1/catalog/gifts").json()
    finally:
        if not engine.owned:
            delete_prefix(engine.url, prefix)
    assert (body["tiers"], body["confirm_coins"]) == ({"moment_coins": 100, "grand_coins": 500}, 250)
    tiers = {g["id"]: g["tier"] for g in body["gifts"] if g["id"] in SHIPPED_COINS}
    assert tiers == {
        gift_id: 3 if coins >= 500 else 2 if coins >= 100 else 1 for gift_id, coins in SHIPPED_COINS.items()
    }
    assert sorted(tiers.values()) == [1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3]


@pytest.mark.pure
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GIFTING_MOMENT_COINS": "0"}, "GIFTING_MOMENT_COINS must be between 1"),
        ({"GIFTING_GRAND_MOMENT_COINS": "-5"}, "GIFTING_GRAND_MOMENT_COINS must be between 1"),
        ({"GIFTING_CONFIRM_COINS": "1.5"}, "GIFTING_CONFIRM_COINS must be an integer"),
        (
            {"GIFTING_MOMENT_COINS": "2000", "GIFTING_GRAND_MOMENT_COINS": "1999"},
            r"GIFTING_GRAND_MOMENT_COINS \(1999\) must be at least GIFTING_MOMENT_COINS \(2000\)",
        ),
    ],
)
def test_bad_tier_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"GIFTING_DEMO": "1", **env})


@pytest.mark.pure
def test_equal_tier_thresholds_are_allowed() -> None:
    loaded = Settings.from_env(
        {"GIFTING_DEMO": "1", "GIFTING_MOMENT_COINS": "700", "GIFTING_GRAND_MOMENT_COINS": "700"}
    )
    assert (loaded.moment_coins, loaded.grand_moment_coins, loaded.confirm_coins) == (700, 700, 1000)


def test_stored_gifts_of_older_and_newer_versions_do_not_break_start_up(engine: Engine, logs: Path) -> None:
    prefix = f"{unique('c')}:"
    keys = KeySchema(prefix)
    comet = unique("comet")
    stored = {
        # An older version's edit of a shipped gift: no "animation" and no "retired".
        "rose": {"id": "rose", "name": "Red Rose", "coins": 2, "streakable": True},
        # A newer version's gift: a field this version does not know.
        comet: {
            "id": comet,
            "name": "Comet",
            "coins": 7,
            "streakable": False,
            "animation": "comet",
            "retired": False,
            "sound": "whoosh",
        },
        # An edit that cannot be read as a gift: the catalog file's lion stays.
        "lion": {"id": "lion", "name": "Lion", "coins": "lots"},
    }
    client = engine_client(engine.url)
    try:
        client.hset(keys.catalog, mapping={gift_id: orjson.dumps(body) for gift_id, body in stored.items()})
        client.incr(keys.catalog_version)
        with (
            running_server(server_env(engine.url, prefix), logs) as server,
            httpx.Client(base_url=server.base_url, timeout=10) as http,
        ):
            gifts = {g["id"]: g for g in http.get("/v1/catalog/gifts").json()["gifts"]}
            assert gifts["rose"] == {
                "id": "rose",
                "name": "Red Rose",
                "coins": 2,
                "streakable": True,
                "animation": "rose-float",  # from the catalog file
                "tier": 1,
            }
            assert gifts[comet] == {
                "id": comet,
                "name": "Comet",
                "coins": 7,
                "streakable": False,
                "animation": "comet",
                "tier": 1,
            }
            assert gifts["lion"]["coins"] == 29999
            assert "stored gift 'lion'" in server.output()
    finally:
        client.close()
        if not engine.owned:
            delete_prefix(engine.url, prefix)
