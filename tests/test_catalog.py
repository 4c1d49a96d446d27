"""The catalog's stored gifts: admins' edits kept in the engine are read back at start-up by
servers of other versions, so a gift written with fewer or more fields than this version has,
or one that cannot be read at all, never stops a server from starting."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from server.keys import KeySchema
from tests.conftest import Engine
from tests.support import delete_prefix, engine_client, running_server, server_env, unique


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
            }
            assert gifts[comet] == {
                "id": comet,
                "name": "Comet",
                "coins": 7,
                "streakable": False,
                "animation": "comet",
            }
            assert gifts["lion"]["coins"] == 29999
            assert "stored gift 'lion'" in server.output()
    finally:
        client.close()
        if not engine.owned:
            delete_prefix(engine.url, prefix)
