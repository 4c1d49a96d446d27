"""``ScriptRunner``: a script the engine lost is loaded again, and only the calls it refused
are sent again, for a single call, a pipeline of scripts and plain commands, and the store's
own calls of both kinds."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from server.keys import KeySchema
from server.store import Store
from server.store.scripts import Call, Script, ScriptRunner
from tests.conftest import Engine
from tests.support import engine_client_async, unique

pytestmark = [pytest.mark.anyio, pytest.mark.embedded_only, pytest.mark.usefixtures("needs_own_engine")]

# Appends ARGV[1] to a list and returns the list's new length: the engine's order of execution.
APPEND = Script("append", "return redis.call('RPUSH', KEYS[1], ARGV[1])")
# Another script, so that a pipeline can hold two that were both lost.
PREPEND = Script("prepend", "return redis.call('LPUSH', KEYS[1], ARGV[1])")


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[Redis]:
    client = engine_client_async(engine.url)
    yield client
    await client.aclose()


async def test_a_single_call_after_a_script_flush_loads_the_script_and_runs_once(
    client: Redis, key_prefix: str
) -> None:
    runner, key = ScriptRunner(client), f"{key_prefix}{unique('list')}"
    assert await runner.call(APPEND, [key], ["before"]) == 1
    await client.script_flush()
    assert await runner.call(APPEND, [key], ["after"]) == 2
    assert await client.lrange(key, 0, -1) == ["before", "after"]


async def test_a_pipeline_after_a_script_flush_resends_only_the_refused_scripts(
    client: Redis, key_prefix: str
) -> None:
    runner, key = ScriptRunner(client), f"{key_prefix}{unique('list')}"
    await client.script_flush()
    replies = await runner.pipeline(
        [
            Call(APPEND, [key], ["a"]),
            Call.command("LLEN", key),
            Call(PREPEND, [key], ["p"]),
            Call.command("RPUSH", key, "plain"),  # ran the first time: never sent again
            Call(APPEND, [key], ["b"]),
        ]
    )
    # The plain commands ran in the first pipeline, where the scripts did not; the scripts
    # ran in the second, in their order.
    assert replies == [2, 0, 3, 1, 4]
    assert await client.lrange(key, 0, -1) == ["p", "plain", "a", "b"]


async def test_a_pipeline_raises_the_first_error_after_every_call_ran(client: Redis, key_prefix: str) -> None:
    runner, key = ScriptRunner(client), f"{key_prefix}{unique('list')}"
    failing = Script("failing", "return redis.error_reply('ERR refused')")
    with pytest.raises(ResponseError, match="refused"):
        await runner.pipeline([Call(failing, [key], []), Call(APPEND, [key], ["after"])])
    assert await client.lrange(key, 0, -1) == ["after"]


async def test_the_stores_calls_keep_working_after_a_script_flush(
    engine: Engine, client: Redis, key_prefix: str
) -> None:
    async with Store.from_url(engine.url, KeySchema(key_prefix)) as store:
        now = int(time.time() * 1000)
        room = await store.rooms.create(unique("c"), unique("r"), "", now)
        await client.script_flush()
        # A single call (room_goal.lua), then a pipeline of reads and scripts (room_state.lua).
        assert (await store.rooms.set_goal(room.room_id, room.creator_id, False, 500)).goal == 500
        await client.script_flush()
        (listed, state), *_ = [
            entry for entry in await store.rooms.live(100) if entry[0].room_id == room.room_id
        ]
        assert (listed, state.goal) == (room, 500)
